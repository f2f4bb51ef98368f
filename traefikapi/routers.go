package traefikapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// RouterInfo is one HTTP router as Traefik's API lists it
// (/api/http/routers, v2 and v3).
type RouterInfo struct {
	Name        string   `json:"name"` // qualified: web@docker
	Rule        string   `json:"rule"`
	Priority    int      `json:"priority"` // v2: the label's, 0 when unset; v3: also the computed one
	EntryPoints []string `json:"entryPoints"`
	Service     string   `json:"service"` // as configured: may be unqualified
	Status      string   `json:"status"`  // enabled, disabled, warning
	Provider    string   `json:"provider"`
}

// ErrNoRouters is returned by Routers for Traefik v1, which has no routers.
var ErrNoRouters = errors.New("Traefik v1 has no HTTP routers")

// Routers lists every HTTP router (all pages).
func (c *Client) Routers(ctx context.Context) ([]RouterInfo, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Major == 1 {
		return nil, ErrNoRouters
	}
	var all []RouterInfo
	seen := map[string]bool{}
	for page := 1; ; {
		a, err := c.get(ctx, fmt.Sprintf("/api/http/routers?per_page=%d&page=%d", c.pageSize, page))
		if err != nil {
			return nil, err
		}
		if a.status == http.StatusBadRequest && page > 1 {
			page, all, seen = 1, nil, map[string]bool{} // routers went away between two pages
			continue
		}
		if a.status != http.StatusOK {
			return nil, a.unexpected(c, "an error")
		}
		if err := expectJSON(a.body, '['); err != nil {
			return nil, a.unexpected(c, err.Error())
		}
		var rs []RouterInfo
		if err := json.Unmarshal(a.body, &rs); err != nil {
			return nil, a.unexpected(c, jsonProblem(err))
		}
		for _, r := range rs {
			if r.Name == "" {
				return nil, a.unexpected(c, "a router without a name (another schema?)")
			}
			if !seen[r.Name] {
				seen[r.Name] = true
				all = append(all, r)
			}
		}
		next, err := strconv.Atoi(a.header.Get("X-Next-Page"))
		if err != nil || next <= page {
			return all, nil
		}
		if next > maxPages {
			return nil, a.unexpected(c, fmt.Sprintf("X-Next-Page %d, more than %d pages", next, maxPages))
		}
		page = next
	}
}

// QualifiedService is the router's service as the API names services
// (web@docker): a service named without a provider is the router's
// provider's.
func (r RouterInfo) QualifiedService() string {
	if strings.Contains(r.Service, "@") || r.Service == "" {
		return r.Service
	}
	p := r.Provider
	if p == "" {
		_, p, _ = strings.Cut(r.Name, "@")
	}
	return r.Service + "@" + p
}
