package manifest

import (
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/keystore/model"
)

// knownKind reports whether kind is a document kind this package reads.
func knownKind(kind string) bool {
	return kind == KindProduct || kind == KindOperationSet || kind == KindPool
}

// pool reads an InferencePool's spec: models, adapters and static endpoints
// (address ip:port, engine, labels), validated as the keystore will.
func (p *parser) pool(spec *yaml.Node, name string, index map[string]*yaml.Node) *model.Pool {
	var pool model.Pool
	if !p.decode(spec, &pool, index) {
		return nil
	}
	pool.Name = name
	pool.Normalize()
	p.fieldErrors(pool.Validate(), index)
	return &pool
}
