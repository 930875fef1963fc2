// Package client talks to the keystore's admin API; the `tollgate` CLI is
// built on it and tests use it to set up products, apps and keys.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tollgate/tollgate/keystore/model"
)

// maxResponseBytes caps how much of an answer the client reads.
const maxResponseBytes = 32 << 20

// Client is an admin API client. The zero value is not usable; use New.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for the admin API at baseURL (e.g. http://127.0.0.1:8421).
func New(baseURL, token string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin URL %q: want http://host:port", baseURL)
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// APIError is an error answer from the admin API.
type APIError struct {
	Status  int
	Code    string
	Type    string
	Message string
	Param   string
}

// Error formats as "message (HTTP 422 validation_failed)".
func (e *APIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, e.Code)
}

// IsNotFound reports whether err is a 404 from the API.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Code    string  `json:"code"`
				Param   *string `json:"param"`
			} `json:"error"`
		}
		ae := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
			ae.Message, ae.Type, ae.Code = e.Error.Message, e.Error.Type, e.Error.Code
			if e.Error.Param != nil {
				ae.Param = *e.Error.Param
			}
		} else {
			ae.Message = fmt.Sprintf("%s %s answered %s", method, path, resp.Status)
		}
		return resp.Header, ae
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.Header, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

func esc(s string) string { return url.PathEscape(s) }

// PutProduct creates or updates a product; the result is created, configured or unchanged.
func (c *Client) PutProduct(ctx context.Context, p model.Product) (model.Product, string, error) {
	var out model.Product
	h, err := c.do(ctx, http.MethodPut, "/admin/v1/products/"+esc(p.Name), p, &out)
	return out, h.Get("Tollgate-Result"), err
}

// GetProduct reads one product.
func (c *Client) GetProduct(ctx context.Context, name string) (model.Product, error) {
	var out model.Product
	_, err := c.do(ctx, http.MethodGet, "/admin/v1/products/"+esc(name), nil, &out)
	return out, err
}

// ListProducts lists every product.
func (c *Client) ListProducts(ctx context.Context) ([]model.Product, error) {
	var out model.List[model.Product]
	_, err := c.do(ctx, http.MethodGet, "/admin/v1/products", nil, &out)
	return out.Items, err
}

// DeleteProduct deletes a product no app uses.
func (c *Client) DeleteProduct(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/admin/v1/products/"+esc(name), nil, nil)
	return err
}

// PutOperationSet creates or updates an operation set; the result is created, configured or unchanged.
func (c *Client) PutOperationSet(ctx context.Context, s model.OperationSet) (model.OperationSet, string, error) {
	var out model.OperationSet
	h, err := c.do(ctx, http.MethodPut, "/admin/v1/operationsets/"+esc(s.Name), s, &out)
	return out, h.Get("Tollgate-Result"), err
}

// ListOperationSets lists every operation set.
func (c *Client) ListOperationSets(ctx context.Context) ([]model.OperationSet, error) {
	var out model.List[model.OperationSet]
	_, err := c.do(ctx, http.MethodGet, "/admin/v1/operationsets", nil, &out)
	return out.Items, err
}

// DeleteOperationSet deletes an operation set no product uses.
func (c *Client) DeleteOperationSet(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/admin/v1/operationsets/"+esc(name), nil, nil)
	return err
}

// CreateDeveloper registers a developer.
func (c *Client) CreateDeveloper(ctx context.Context, d model.Developer) (model.Developer, error) {
	var out model.Developer
	_, err := c.do(ctx, http.MethodPost, "/admin/v1/developers", d, &out)
	return out, err
}

// ListDevelopers lists every developer.
func (c *Client) ListDevelopers(ctx context.Context) ([]model.Developer, error) {
	var out model.List[model.Developer]
	_, err := c.do(ctx, http.MethodGet, "/admin/v1/developers", nil, &out)
	return out.Items, err
}

// DeleteDeveloper deletes a developer without apps.
func (c *Client) DeleteDeveloper(ctx context.Context, email string) error {
	_, err := c.do(ctx, http.MethodDelete, "/admin/v1/developers/"+esc(email), nil, nil)
	return err
}

// CreateApp registers an app for a developer.
func (c *Client) CreateApp(ctx context.Context, a model.App) (model.App, error) {
	var out model.App
	_, err := c.do(ctx, http.MethodPost, "/admin/v1/apps", a, &out)
	return out, err
}

// ListApps lists apps, a developer's only when developer is set.
func (c *Client) ListApps(ctx context.Context, developer string) ([]model.App, error) {
	path := "/admin/v1/apps"
	if developer != "" {
		path += "?developer=" + url.QueryEscape(developer)
	}
	var out model.List[model.App]
	_, err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Items, err
}

// DeleteApp deletes an app and all its keys.
func (c *Client) DeleteApp(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/admin/v1/apps/"+esc(name), nil, nil)
	return err
}

// CreateKey issues a key for an app; the secret is in the answer only.
func (c *Client) CreateKey(ctx context.Context, app string, req model.KeyRequest) (model.IssuedKey, error) {
	var out model.IssuedKey
	_, err := c.do(ctx, http.MethodPost, "/admin/v1/apps/"+esc(app)+"/keys", req, &out)
	return out, err
}

// ListKeys lists keys (never their secrets), an app's only when app is set.
func (c *Client) ListKeys(ctx context.Context, app string) ([]model.Key, error) {
	path := "/admin/v1/keys"
	if app != "" {
		path = "/admin/v1/apps/" + esc(app) + "/keys"
	}
	var out model.List[model.Key]
	_, err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Items, err
}

// SetKeyStatus revokes (model.KeyRevoked) or re-approves (model.KeyApproved) a key.
func (c *Client) SetKeyStatus(ctx context.Context, id, status string) (model.Key, error) {
	action := "approve"
	if status == model.KeyRevoked {
		action = "revoke"
	}
	var out model.Key
	_, err := c.do(ctx, http.MethodPost, "/admin/v1/keys/"+esc(id)+"/"+action, nil, &out)
	return out, err
}

// DeleteKey deletes a key record.
func (c *Client) DeleteKey(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/admin/v1/keys/"+esc(id), nil, nil)
	return err
}
