package deploy

import "time"

// StepReport is what one step of a run of several steps (a rollout or
// rollback of several replicas, a scale) did: Result.Steps, in the order
// the steps ran. Containers are named as in events (name, or short ID).
type StepReport struct {
	Step int `json:"step"` // 1-based, as Event.Step
	// Started are the new containers the step created and started;
	// Restarted the retained containers of a rollback's target version it
	// started again. Every one of them was healthy and routed before the
	// step touched an old container.
	Started   []string `json:"started,omitempty"`
	Restarted []string `json:"restarted,omitempty"`
	// Drained are the old containers the step took out of the router
	// before their stop, through their drain probe or the atomic switch;
	// Stopped are those it stopped (drained or
	// by signal); Removed those of them it then removed (a scale down, a
	// container left half-made by an interrupted run).
	Drained []string `json:"drained,omitempty"`
	Stopped []string `json:"stopped,omitempty"`
	Removed []string `json:"removed,omitempty"`
	// Gone are the step's old containers someone else removed meanwhile.
	Gone []string `json:"gone,omitempty"`
	// Elapsed is the step's time, from its first action to the next
	// step's; the last step's includes the --watch window (its old
	// containers are stopped after it), not the prune.
	Elapsed Duration `json:"elapsed"`
}

// report is what each step of a finished run did.
func (s *stepRun) report() []StepReport {
	out := make([]StepReport, len(s.steps))
	for i, st := range s.steps {
		rep := &out[i]
		rep.Step = i + 1
		for _, t := range s.news {
			switch {
			case t.step != i+1:
			case t.reused:
				rep.Restarted = append(rep.Restarted, t.short())
			default:
				rep.Started = append(rep.Started, t.short())
			}
		}
		for _, j := range st.Drain {
			if j < 0 || j >= len(s.olds) {
				continue
			}
			t := s.olds[j]
			if t.old.gone {
				rep.Gone = append(rep.Gone, t.short())
				continue
			}
			if t.old.drained {
				rep.Drained = append(rep.Drained, t.short())
			}
			if t.state == TargetStopped || t.state == TargetGone {
				rep.Stopped = append(rep.Stopped, t.short())
			}
			if t.state == TargetGone {
				rep.Removed = append(rep.Removed, t.short())
			}
		}
		if i < len(s.began) {
			end := s.ended
			if i+1 < len(s.began) {
				end = s.began[i+1]
			}
			rep.Elapsed = Duration(max(end.Sub(s.began[i]), time.Duration(0)))
		}
	}
	return out
}
