package engine

import (
	"maps"
	"testing"
)

func TestResourceEnvName(t *testing.T) {
	for pool, want := range map[string]string{
		"device":     "AURA_RESOURCE_DEVICE",
		"lab-phone":  "AURA_RESOURCE_LAB_PHONE",
		"api:openai": "AURA_RESOURCE_API_OPENAI",
		"gpu2":       "AURA_RESOURCE_GPU2",
	} {
		if got := ResourceEnvName(pool); got != want {
			t.Errorf("ResourceEnvName(%q) = %q, want %q", pool, got, want)
		}
	}
}

func TestExecGetsTheBindingInItsEnvironment(t *testing.T) {
	ru := &run{req: Request{Binding: map[string]string{"device": "emulator-5554"}}}
	params := map[string]any{"argv": []any{"true"}, "env": map[string]any{"MINE": "1", "AURA_RESOURCE_DEVICE": "forged"}}
	got := ru.withResourceEnv("exec", params)
	want := map[string]any{"MINE": "1", "AURA_RESOURCE_DEVICE": "emulator-5554"}
	if env, _ := got["env"].(map[string]any); !maps.Equal(env, want) {
		t.Fatalf("env %v, want %v", got["env"], want)
	}
	if env := params["env"].(map[string]any); env["AURA_RESOURCE_DEVICE"] != "forged" {
		t.Fatal("the step's own params were modified")
	}
	if got := ru.withResourceEnv("log", params); got["env"].(map[string]any)["AURA_RESOURCE_DEVICE"] != "forged" {
		t.Fatal("an action other than exec got the binding")
	}
}

func TestExecGetsTheFencingTokensInItsEnvironment(t *testing.T) {
	if got := FenceEnvName("account:main"); got != "AURA_FENCE_ACCOUNT_MAIN" {
		t.Fatalf("FenceEnvName = %q", got)
	}
	ru := &run{req: Request{Fences: map[string]int64{"account:main": 1234}}}
	params := map[string]any{"argv": []any{"true"}, "env": map[string]any{"AURA_FENCE_ACCOUNT_MAIN": "1"}}
	got := ru.withResourceEnv("exec", params)
	want := map[string]any{"AURA_FENCE_ACCOUNT_MAIN": "1234"}
	if env, _ := got["env"].(map[string]any); !maps.Equal(env, want) {
		t.Fatalf("env %v, want %v", got["env"], want)
	}
}
