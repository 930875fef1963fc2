package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tollgate/tollgate/keystore/client"
	"github.com/tollgate/tollgate/keystore/manifest"
	"github.com/tollgate/tollgate/keystore/model"
)

// runPoolsApply applies InferencePool manifests (static endpoints) to the
// keystore, from which every picker's pools_source fetches them. A pool that
// takes a model from another pool applied in the same run is retried after
// the others, so the order of documents does not matter; --prune deletes the
// pools the files do not declare (the files are then the whole set, as a
// controller that regenerates them from InferencePools and EndpointSlices
// wants).
func runPoolsApply(ctx context.Context, e env, args []string) error {
	a := newApplyFlags(e, "pools apply", "manifest file of kind InferencePool (repeatable; - for stdin)")
	prune := a.fs.Bool("prune", false, "delete the pools these files do not declare")
	if err := a.parse(args); err != nil {
		return err
	}
	af, files, dryRun := a.af, a.files, a.dryRun
	docs, err := parseManifests(e, files, manifest.KindPool)
	if err != nil {
		return err
	}
	if len(docs) == 0 && !*prune {
		return fmt.Errorf("nothing to apply: %s hold(s) no %s document (use --prune to delete every pool)", strings.Join(files, ", "), manifest.KindPool)
	}
	if *dryRun {
		for _, d := range docs {
			fmt.Fprintf(e.stdout, "%s valid (dry run)\n", d.Ref())
		}
		return nil
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	declared := map[string]bool{}
	for _, d := range docs {
		declared[d.Name] = true
	}
	var stale []string
	if *prune {
		existing, err := c.ListPools(ctx)
		if err != nil {
			return err
		}
		for _, p := range existing {
			if !declared[p.Name] {
				stale = append(stale, p.Name)
			}
		}
	}
	// Pools to be pruned may hold models the applied ones take over: delete first.
	for _, name := range stale {
		if err := c.DeletePool(ctx, name); err != nil && !client.IsNotFound(err) {
			return err
		}
		fmt.Fprintf(e.stdout, "inferencepool/%s pruned\n", name)
	}
	pending := docs
	rejected := map[string]error{}
	for len(pending) > 0 {
		var conflicted []manifest.Document
		for _, d := range pending {
			_, res, err := c.PutPool(ctx, *d.Pool)
			var ae *client.APIError
			switch {
			case err == nil:
				delete(rejected, d.Ref())
				fmt.Fprintf(e.stdout, "%s %s\n", d.Ref(), dash(res))
			case !errors.As(err, &ae):
				return err // connection problems stop the run
			case ae.Status == http.StatusConflict:
				conflicted = append(conflicted, d)
				rejected[d.Ref()] = err
			default:
				fmt.Fprintf(e.stderr, "%s: %s: %v\n", d.Pos, d.Ref(), err)
				rejected[d.Ref()] = err
			}
		}
		if len(conflicted) == len(pending) { // no progress: the conflicts are real
			for _, d := range conflicted {
				fmt.Fprintf(e.stderr, "%s: %s: %v\n", d.Pos, d.Ref(), rejected[d.Ref()])
			}
			break
		}
		pending = conflicted
	}
	if len(rejected) > 0 {
		return fmt.Errorf("%d of %d document(s) rejected by the keystore", len(rejected), len(docs))
	}
	return nil
}

func runPoolsList(ctx context.Context, e env, args []string) error {
	return listing[model.Pool]{
		name: "pools list",
		fetch: func(c *client.Client, ctx context.Context, _ string) ([]model.Pool, error) {
			return c.ListPools(ctx)
		},
		header: "NAME\tMODELS\tADAPTERS\tENDPOINTS",
		row: func(p model.Pool) []string {
			eps := make([]string, len(p.Endpoints))
			for i, ep := range p.Endpoints {
				eps[i] = ep.Address
				if ep.Engine != model.EngineVLLM {
					eps[i] += "(" + ep.Engine + ")"
				}
			}
			return []string{p.Name, dash(strings.Join(p.Models, ",")), dash(strings.Join(p.Adapters, ",")), strings.Join(eps, ",")}
		},
	}.run(ctx, e, args)
}

func runPoolsGet(ctx context.Context, e env, args []string) error {
	return getter("pools get", "pool", (*client.Client).GetPool)(ctx, e, args)
}

func runPoolsDelete(ctx context.Context, e env, args []string) error {
	return deleter("pools delete", "pool", (*client.Client).DeletePool)(ctx, e, args)
}
