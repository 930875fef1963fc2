package keystore

import (
	"net/http"

	"github.com/tollgate/tollgate/keystore/model"
)

// PoolsPath is the data-plane route the endpoint picker's pools_source polls.
const PoolsPath = "/v1/pools"

// CodeConflict refuses a record that contradicts another (a model two pools claim).
const CodeConflict = "conflict"

// poolRoutes serves /admin/v1/pools like products: list, get, create,
// idempotent PUT (apply) and delete.
func (s *Service) poolRoutes(api *http.ServeMux) {
	st := s.cfg.Store
	resource[model.Pool]{
		kind: "pool", path: "/pools", idField: "name",
		id:      func(p *model.Pool) *string { return &p.Name },
		prepare: func(p *model.Pool) model.FieldErrors { p.Normalize(); return p.Validate() },
		create:  st.CreatePool, put: st.PutPool, get: st.GetPool,
		list: listAll(st.ListPools), del: st.DeletePool,
	}.routes(s, api)
}

// handlePools answers GET /v1/pools with every pool in the shape the
// picker's pools_source reads ({"pools":[{name, models, adapters,
// endpoints}]}), so an applied change reaches every Envoy on its next poll.
func (s *Service) handlePools(w http.ResponseWriter, r *http.Request) {
	pools, err := s.cfg.Store.ListPools(r.Context())
	if err != nil {
		writeError(w, s.storeError(r.Context(), err))
		return
	}
	doc := model.PoolsDocument{Pools: make([]model.PoolSpec, 0, len(pools))}
	for _, p := range pools {
		doc.Pools = append(doc.Pools, p.Spec())
	}
	writeJSON(w, http.StatusOK, doc)
}
