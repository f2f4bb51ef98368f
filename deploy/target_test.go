package deploy

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// composeTarget is a Target as package compose makes one: the
// configuration of the file (webLabels, an env), numbered by "num", and
// labels that carry the number and the image ID.
func composeTarget() *Target {
	labels := webLabels()
	labels["from"] = "target"
	return &Target{
		Config:      &ContainerConfig{Labels: labels, Env: []string{"FROM_FILE=1"}, Networks: []NetworkAttachment{{Name: "proxy"}}},
		NumberLabel: "num",
		Labels: func(n int, imageID string) (map[string]string, error) {
			return map[string]string{"num": strconv.Itoa(n), "image-id": imageID}, nil
		},
		OneOffLabels: map[string]string{"oneoff": "True"},
	}
}

// A rollout with a Target configures every new container from it, not
// from the current ones, and numbers them above every number the
// service's containers have had (a stopped one's included), each once.
func TestTargetConfiguresAndNumbersTheNewContainers(t *testing.T) {
	w, olds := threeV1()
	for i, n := range []string{"1", "2", "5"} {
		olds[i].Labels["num"] = n
	}
	stopped := w.addRunning("web-old", "v0", true)
	stopped.State, stopped.Labels["num"] = "exited", "9"
	e, _ := engine(w)
	o := testOptions("v2")
	o.Replicas, o.MaxSurge, o.MaxUnavailable = 3, &Amount{N: 100, Percent: true}, &Amount{N: 0}
	o.Target, o.Select = composeTarget(), map[string]string{LabelApp: "web"}
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var nums []string
	for _, nc := range res.NewContainers {
		c := w.containers[nc.ID]
		if c.spec.Config != o.Target.Config || c.spec.From != "" {
			t.Errorf("%s: created from %q with config %p, want the target's config %p and nothing copied", c.Name, c.spec.From, c.spec.Config, o.Target.Config)
		}
		if c.Labels["from"] != "target" || c.Labels["image-id"] != w.images["web:v2"].ID || c.Labels[LabelApp] != "web" || c.Labels[LabelVersion] != "v2" {
			t.Errorf("%s: labels %v", c.Name, c.Labels)
		}
		if !slices.Contains(c.Env, "FROM_FILE=1") {
			t.Errorf("%s: env %v lacks the target's", c.Name, c.Env)
		}
		nums = append(nums, c.Labels["num"])
	}
	slices.Sort(nums)
	if !slices.Equal(nums, []string{"10", "11", "12"}) {
		t.Errorf("numbers %v, want 10, 11, 12 (above the stopped container's 9)", nums)
	}
}

// A Target's labels hook that fails fails the rollout before the
// container is made, and the old version serves on.
func TestTargetLabelsFailureRestores(t *testing.T) {
	w, _ := threeV1()
	e, _ := engine(w)
	o := testOptions("v2")
	o.Replicas = 3
	o.Target, o.Select = composeTarget(), map[string]string{LabelApp: "web"}
	o.Target.Labels = func(n int, imageID string) (map[string]string, error) {
		if n > 1 { // the first succeeds
			return nil, errors.New("boom")
		}
		return map[string]string{"num": strconv.Itoa(n)}, nil
	}
	if _, err := e.Rollout(context.Background(), o); err == nil {
		t.Fatal("rollout succeeded")
	}
	assertRestored(t, w)
}

// Steps asked for by a declaration (StepsNeedProbes) from containers
// without the drain probe switch atomically, in one step, with a warning
// that says why; from containers with it, they run as asked.
func TestStepsNeedProbesSwitchAtomicallyFromUnprobedContainers(t *testing.T) {
	for _, byDeployctl := range []bool{false, true} {
		t.Run("probed-"+strconv.FormatBool(byDeployctl), func(t *testing.T) {
			s := atomicScenario()
			s.w.addRunning("web-v1b", "v1", true)
			s.w.addRunning("web-v1c", "v1", true)
			if !byDeployctl { // as docker compose up makes them
				for _, c := range s.w.containers {
					delete(c.Labels, LabelDrain)
				}
			}
			e, ev := s.engine(newFaultyRuntime(s.w.runtime()))
			o := faultOptions()
			o.Replicas, o.MaxSurge, o.MaxUnavailable = 3, &Amount{N: 1}, &Amount{N: 0}
			o.Switch, o.StepsNeedProbes = SwitchGradual, true
			res, err := e.Rollout(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			warned := slices.ContainsFunc(ev.warnings(), func(w string) bool { return strings.Contains(w, "switching atomically, every replica in one step") })
			if byDeployctl {
				if res.Switch != SwitchGradual || len(res.Steps) != 3 || warned {
					t.Errorf("probed containers: switch %s in %d steps (warned %v), want gradual in 3, no warning", res.Switch, len(res.Steps), warned)
				}
				return
			}
			if res.Switch != SwitchAtomic || len(res.Steps) > 1 || !warned {
				t.Errorf("unprobed containers: switch %s in %d steps (warned %v), want atomic in one, with the warning", res.Switch, len(res.Steps), warned)
			}
		})
	}
}

// An atomic rollout with a Target keeps the user's routers off the new
// containers (they are the route containers'), the Target's labels
// included; a gradual one from an app a route container routes joins the
// route's service, as the copy of a routed container would.
func TestTargetRoutersStayTheRouteContainers(t *testing.T) {
	s := atomicScenario()
	e, _ := s.engine(newFaultyRuntime(s.w.runtime()))
	o := faultOptions()
	o.Switch, o.Target, o.Select = SwitchAtomic, composeTarget(), map[string]string{LabelApp: "web"}
	base := o.Target.Labels
	o.Target.Labels = func(n int, imageID string) (map[string]string, error) {
		l, err := base(n, imageID)
		maps.Copy(l, webLabels()) // as compose.ContainerLabels: the service's own labels too
		return l, err
	}
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	routerless := func(id string) {
		t.Helper()
		c := s.w.containers[id]
		for k := range c.Labels {
			if strings.HasPrefix(k, "traefik.http.routers.") {
				t.Errorf("new container %s carries %s", c.Name, k)
			}
		}
	}
	routerless(res.New.ID)
	if c := s.w.containers[res.New.ID]; c.Labels[LabelRoutingBase] == "" {
		t.Errorf("new container %s lacks %s", c.Name, LabelRoutingBase)
	}

	// Then gradually, to v3: the new container joins web-v2's service.
	s.w.addImage("web:v3", nil)
	o.Version, o.Switch = "v3", SwitchGradual
	res3, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	routerless(res3.New.ID)
	c := s.w.containers[res3.New.ID]
	if c.Labels["traefik.http.services.web-v2.loadbalancer.server.port"] == "" {
		t.Errorf("v3 container's labels %v: not in web-v2's service", c.Labels)
	}
}

// A Target's post_start hooks run in every new container once it
// started, its pre_stop hooks in every old one after it left Traefik and
// before its stop signal; a failing post_start fails the new container,
// and the old version serves on.
func TestTargetHooks(t *testing.T) {
	w, olds := threeV1()
	e, _ := engine(w)
	o := testOptions("v2")
	o.Replicas, o.MaxSurge, o.MaxUnavailable = 3, &Amount{N: 100, Percent: true}, &Amount{N: 0}
	o.Target, o.Select = composeTarget(), map[string]string{LabelApp: "web"}
	o.Target.PostStart = []Hook{{Command: []string{"warm", "cache"}}}
	o.Target.PreStop = []Hook{{Command: []string{"flush"}}}
	res, err := e.Rollout(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.NewContainers {
		if i, j := indexOf(t, w.ops, "start "+c.Name), indexOf(t, w.ops, "hook "+c.Name+" warm cache"); j < i {
			t.Errorf("post_start of %s before its start: %q", c.Name, w.ops)
		}
	}
	for _, old := range olds {
		if i, j := indexOf(t, w.ops, "hook "+old.Name+" flush"), indexOf(t, w.ops, "stop "+old.Name); i > j {
			t.Errorf("pre_stop of %s after its stop: %q", old.Name, w.ops)
		}
	}

	w2, _ := threeV1()
	w2.hookExit = map[string]int{"warm": 1}
	e2, _ := engine(w2)
	if _, err := e2.Rollout(context.Background(), o); err == nil || !strings.Contains(err.Error(), `post_start hook "warm cache"`) {
		t.Fatalf("a failing post_start: err %v", err)
	}
	assertRestored(t, w2)
}

// A rollback with a numbering Target (a compose service's) gives each
// container it creates from a retained one a number of its own, above
// every number the service has had, not the copy's.
func TestRollbackNumbersTheContainersItCreates(t *testing.T) {
	w, e, _ := rollbackThree("web-v1-a")
	w.mu.Lock()
	n := 0
	for _, c := range w.containers {
		n++
		c.Labels["num"] = strconv.Itoa(n)
	}
	w.mu.Unlock()
	o := rollbackThreeOptions()
	o.Target, o.Select = &Target{NumberLabel: "num"}, map[string]string{LabelApp: "web"}
	if _, _, err := e.Rollback(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	checkRolledBack(t, w)
	w.mu.Lock()
	defer w.mu.Unlock()
	seen, created := map[string]string{}, 0
	for _, c := range w.containers {
		if prev, dup := seen[c.Labels["num"]]; dup {
			t.Errorf("%s and %s both have number %s", prev, c.Name, c.Labels["num"])
		}
		seen[c.Labels["num"]] = c.Name
		if got, _ := strconv.Atoi(c.Labels["num"]); c.spec.Name != "" && got <= n {
			t.Errorf("created %s has number %s, want above %d", c.Name, c.Labels["num"], n)
		}
		if c.spec.Name != "" {
			created++
		}
	}
	if created != 2 {
		t.Errorf("%d containers created, want 2", created)
	}
}
