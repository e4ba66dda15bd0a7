// Command gitops-health computes the health that GitOps tools derive from Kubernetes objects, with
// the libraries those tools embed, so tests can check our conditions, Argo CD Lua and Flux CEL
// against real status objects instead of against our reading of their docs:
//
//	gitops-health kstatus < objects.json              sigs.k8s.io/cli-utils kstatus (Flux, kpt, kubectl-based tools)
//	gitops-health argocd SCRIPT.lua < objects.json    the script in gopher-lua, run the way Argo CD runs a
//	                                                  resource_customizations health check
//	gitops-health flux KUSTOMIZATION.yaml < objects.json  the Kustomization's healthCheckExprs in cel-go,
//	                                                  evaluated in the order of Flux RFC 0009
//
// Input: one object, or a List (kubectl get -o json). Output: a JSON array, one
// {"name","status","message"} per object, in input order; "Error" when the object could not be
// evaluated. Exit 2 on bad arguments or input.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

type result struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gitops-health:", err)
		os.Exit(2)
	}
}

func run(args []string, in io.Reader, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: gitops-health kstatus | argocd SCRIPT.lua | flux KUSTOMIZATION.yaml (objects on stdin)")
	}
	objects, err := readObjects(in)
	if err != nil {
		return err
	}
	var eval func(*unstructured.Unstructured) (result, error)
	switch args[0] {
	case "kstatus":
		eval = kstatusHealth
	case "argocd":
		if len(args) != 2 {
			return fmt.Errorf("argocd needs the Lua script's path")
		}
		script, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		eval = func(u *unstructured.Unstructured) (result, error) { return argocdHealth(string(script), u) }
	case "flux":
		if len(args) != 2 {
			return fmt.Errorf("flux needs the Kustomization's path")
		}
		evaluator, err := loadFluxChecks(args[1])
		if err != nil {
			return err
		}
		eval = evaluator.health
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
	results := make([]result, 0, len(objects))
	for _, u := range objects {
		// An evaluation error is a result, not a failure of the tool: Flux retries such an object until
		// its timeout, Argo CD shows it as Unknown with the error.
		r, err := eval(u)
		if err != nil {
			r = result{Status: "Error", Message: err.Error()}
		}
		r.Name = u.GetName()
		results = append(results, r)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

func readObjects(in io.Reader) ([]*unstructured.Unstructured, error) {
	raw, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	// Integers as int64, as client-go decodes them (kstatus' accessors insist on it).
	var obj map[string]any
	if err := utiljson.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("stdin is not a JSON object: %w", err)
	}
	if items, ok := obj["items"].([]any); ok {
		out := make([]*unstructured.Unstructured, 0, len(items))
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("items[%d] is not an object", i)
			}
			out = append(out, &unstructured.Unstructured{Object: m})
		}
		return out, nil
	}
	return []*unstructured.Unstructured{{Object: obj}}, nil
}
