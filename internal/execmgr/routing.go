package execmgr

import (
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// SubmitTags returns the resource tags a submission would carry, the
// task's own (templates rendered over the request's inputs) and the
// request's, without checking them against this daemon's declared pools:
// in a cluster another node may hold the instance a tag names, and the
// router sends the submission there. A request this daemon cannot resolve
// (unknown task, inputs that do not fit) returns an error; Submit then
// answers it with the usual code.
func (m *Manager) SubmitTags(req *aurav1.SubmitRequest) ([]string, error) {
	def, inputs, err := m.resolve(req)
	if err != nil {
		return nil, err
	}
	return renderedTags(def, inputs, req.GetResourceTags(), req.GetLabels()[parentLabel] != "")
}
