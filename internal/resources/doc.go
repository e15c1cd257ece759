// Package resources holds what the daemon declares about resources, once
// for every plan: plain counting resources ("api:openai": 5) and pools of
// named instances (a device farm's emulators), read from a resources file
// or the resources: section of aurad's config. It checks resource tags
// against those declarations, at plan check and at submit, and names a
// task's bound instances for its steps (template scope resources.<pool>,
// environment AURA_RESOURCE_<POOL>).
//
// Admission itself (which instance a task gets) is package admission's;
// this package only says what exists.
package resources
