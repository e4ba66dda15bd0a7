package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Argo CD accepts only these health codes from a script; anything else becomes Unknown.
var argocdCodes = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// argocdHealth runs a health script as Argo CD runs a user-supplied resource customization: only the
// package, base and table libraries (string, math and io are absent unless useOpenLibs is set, so a
// script that works here also works there), a one-second budget, the object as the global `obj`.
func argocdHealth(script string, u *unstructured.Unstructured) (result, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage, lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable,
	} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(open), Protect: true}, lua.LString(name)); err != nil {
			return result{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, u.Object))
	if err := L.DoString(script); err != nil {
		return result{}, err
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return result{}, fmt.Errorf("the script returned %s, not a table", L.Get(-1).Type())
	}
	code := lua.LVAsString(ret.RawGetString("status"))
	if !argocdCodes[code] {
		return result{Status: "Unknown", Message: fmt.Sprintf("invalid health status %q", code)}, nil
	}
	return result{Status: code, Message: lua.LVAsString(ret.RawGetString("message"))}, nil
}

// toLua converts decoded JSON into Lua values: arrays become sequences, objects tables keyed by
// string, numbers LNumber (Argo CD converts the same way).
func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case json.Number:
		return lua.LString(x)
	case string:
		return lua.LString(x)
	case []any:
		t := L.CreateTable(len(x), 0)
		for _, item := range x {
			t.Append(toLua(L, item))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(x))
		for k, item := range x {
			t.RawSetString(k, toLua(L, item))
		}
		return t
	}
	return lua.LNil
}
