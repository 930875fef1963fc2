package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/tollgate/tollgate/keystore/client"
	"github.com/tollgate/tollgate/keystore/manifest"
	"github.com/tollgate/tollgate/keystore/model"
)

// Account names the demo's developer, app and products.
type Account struct {
	// Developer is the owning developer's e-mail.
	Developer string
	// App is the app the key belongs to.
	App string
	// Products the app subscribes to.
	Products []string
	// KeyLifetime bounds the key ("720h", "30d"; "" = until revoked).
	KeyLifetime string
}

// ApplyProducts applies a products manifest (APIOperationSet and
// APIProduct documents) the way `tollgate products apply` does: operation
// sets first, all or nothing on validation errors.
func ApplyProducts(ctx context.Context, c *client.Client, file string, raw []byte) error {
	docs, err := manifest.Parse(file, raw)
	if err != nil {
		return fmt.Errorf("products manifest: %w", err)
	}
	for _, pass := range []string{manifest.KindOperationSet, manifest.KindProduct} {
		for _, d := range docs {
			if d.Kind != pass {
				continue
			}
			var err error
			if d.OperationSet != nil {
				_, _, err = c.PutOperationSet(ctx, *d.OperationSet)
			} else {
				_, _, err = c.PutProduct(ctx, *d.Product)
			}
			if err != nil {
				return fmt.Errorf("apply %s: %w", d.Ref(), err)
			}
		}
	}
	return nil
}

// IssueKey makes sure the developer and app exist (an existing app must
// subscribe to exactly a.Products, else it is recreated), deletes the app's
// earlier keys, so that only the newest demo key works, and issues a key.
func IssueKey(ctx context.Context, c *client.Client, a Account) (model.IssuedKey, error) {
	devs, err := c.ListDevelopers(ctx)
	if err != nil {
		return model.IssuedKey{}, fmt.Errorf("list developers: %w", err)
	}
	if !slices.ContainsFunc(devs, func(d model.Developer) bool { return d.Email == a.Developer }) {
		if _, err := c.CreateDeveloper(ctx, model.Developer{Email: a.Developer, Name: "Tollgate demo"}); err != nil {
			return model.IssuedKey{}, fmt.Errorf("create developer: %w", err)
		}
	}
	apps, err := c.ListApps(ctx, a.Developer)
	if err != nil {
		return model.IssuedKey{}, fmt.Errorf("list apps: %w", err)
	}
	i := slices.IndexFunc(apps, func(x model.App) bool { return x.Name == a.App })
	if i >= 0 && !sameSet(apps[i].Products, a.Products) {
		if err := c.DeleteApp(ctx, a.App); err != nil {
			return model.IssuedKey{}, fmt.Errorf("recreate app %s: %w", a.App, err)
		}
		i = -1
	}
	if i < 0 {
		if _, err := c.CreateApp(ctx, model.App{Name: a.App, Developer: a.Developer, Products: a.Products}); err != nil {
			return model.IssuedKey{}, fmt.Errorf("create app: %w", err)
		}
	}
	keys, err := c.ListKeys(ctx, a.App)
	if err != nil {
		return model.IssuedKey{}, fmt.Errorf("list keys: %w", err)
	}
	for _, k := range keys {
		if err := c.DeleteKey(ctx, k.ID); err != nil && !client.IsNotFound(err) {
			return model.IssuedKey{}, fmt.Errorf("delete old key %s: %w", k.ID, err)
		}
	}
	k, err := c.CreateKey(ctx, a.App, model.KeyRequest{ExpiresIn: a.KeyLifetime})
	if err != nil {
		return model.IssuedKey{}, fmt.Errorf("create key: %w", err)
	}
	if k.Secret == "" {
		return model.IssuedKey{}, errors.New("create key: the keystore returned no secret")
	}
	return k, nil
}

// sameSet reports whether a and b hold the same strings.
func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// NewDataToken makes a random data-plane token for one demo run (32 hex
// digits from crypto/rand).
func NewDataToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("data-plane token: %w", err)
	}
	return "tgdata_" + hex.EncodeToString(b[:]), nil
}
