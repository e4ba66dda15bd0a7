package main

import (
	"context"
	"fmt"
	"os"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

type healthCheckExprs struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Current    string `json:"current"`
	InProgress string `json:"inProgress"`
	Failed     string `json:"failed"`
}

type fluxChecks struct {
	byKind map[string][]namedProgram // "apiVersion/kind" -> inProgress, failed, current (those set)
}

type namedProgram struct {
	status string
	source string
	prog   cel.Program
}

// loadFluxChecks reads spec.healthCheckExprs of a Kustomization. The CEL environment matches what
// kustomize-controller parses with: expressions are parsed, not type-checked, since the object's top
// level fields (apiVersion, kind, metadata, spec, status) are the variables.
func loadFluxChecks(path string) (*fluxChecks, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var k struct {
		Kind string `json:"kind"`
		Spec struct {
			HealthCheckExprs []healthCheckExprs `json:"healthCheckExprs"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if k.Kind != "Kustomization" || len(k.Spec.HealthCheckExprs) == 0 {
		return nil, fmt.Errorf("%s: not a Kustomization with spec.healthCheckExprs", path)
	}
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(), cel.EagerlyValidateDeclarations(true), cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true), cel.OptionalTypes(), ext.Strings(), ext.Sets(), ext.Encoders(),
	)
	if err != nil {
		return nil, err
	}
	checks := &fluxChecks{byKind: map[string][]namedProgram{}}
	for _, h := range k.Spec.HealthCheckExprs {
		if h.Current == "" {
			return nil, fmt.Errorf("%s %s: current is required", h.APIVersion, h.Kind)
		}
		var progs []namedProgram
		for _, e := range []struct{ status, src string }{
			{"InProgress", h.InProgress}, {"Failed", h.Failed}, {"Current", h.Current},
		} {
			if e.src == "" {
				continue
			}
			ast, iss := env.Parse(e.src)
			if iss != nil && iss.Err() != nil {
				return nil, fmt.Errorf("%s %s %s: %w", h.APIVersion, h.Kind, e.status, iss.Err())
			}
			prog, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
			if err != nil {
				return nil, err
			}
			progs = append(progs, namedProgram{status: e.status, source: e.src, prog: prog})
		}
		checks.byKind[h.APIVersion+"/"+h.Kind] = progs
	}
	return checks, nil
}

// health follows RFC 0009: an unobserved generation is InProgress; then the first of inProgress,
// failed, current that is true decides; none true is InProgress.
func (f *fluxChecks) health(u *unstructured.Unstructured) (result, error) {
	progs, ok := f.byKind[u.GetAPIVersion()+"/"+u.GetKind()]
	if !ok {
		return result{}, fmt.Errorf("no healthCheckExprs for %s %s", u.GetAPIVersion(), u.GetKind())
	}
	observed, found, err := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	if err != nil {
		return result{}, err
	}
	if found && observed != u.GetGeneration() {
		return result{Status: "InProgress", Message: "generation not observed"}, nil
	}
	for _, p := range progs {
		val, _, err := p.prog.ContextEval(context.Background(), u.Object)
		if err != nil {
			return result{}, fmt.Errorf("%s expression %q: %w", p.status, p.source, err)
		}
		b, ok := val.(types.Bool)
		if !ok {
			return result{}, fmt.Errorf("%s expression %q is not boolean", p.status, p.source)
		}
		if b {
			return result{Status: p.status, Message: p.source}, nil
		}
	}
	return result{Status: "InProgress", Message: "no expression was true"}, nil
}
