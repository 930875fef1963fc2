package client

import (
	"context"
	"net/http"

	"github.com/tollgate/tollgate/keystore/model"
)

// PutPool creates or updates an inference pool; the result is created, configured or unchanged.
func (c *Client) PutPool(ctx context.Context, p model.Pool) (model.Pool, string, error) {
	var out model.Pool
	h, err := c.do(ctx, http.MethodPut, "/admin/v1/pools/"+esc(p.Name), p, &out)
	return out, h.Get("Tollgate-Result"), err
}

// GetPool reads one inference pool.
func (c *Client) GetPool(ctx context.Context, name string) (model.Pool, error) {
	var out model.Pool
	_, err := c.do(ctx, http.MethodGet, "/admin/v1/pools/"+esc(name), nil, &out)
	return out, err
}

// ListPools lists every inference pool.
func (c *Client) ListPools(ctx context.Context) ([]model.Pool, error) {
	var out model.List[model.Pool]
	_, err := c.do(ctx, http.MethodGet, "/admin/v1/pools", nil, &out)
	return out.Items, err
}

// DeletePool deletes an inference pool.
func (c *Client) DeletePool(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/admin/v1/pools/"+esc(name), nil, nil)
	return err
}
