package dockerutil_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/deployctl/deployctl/dockerutil"
	"github.com/deployctl/deployctl/internal/testenv"
)

// What shell completion lists, against the real engine: the label values
// of the containers with a label (stopped ones too), and the local tags of
// a repository.
func TestCompletionLists(t *testing.T) {
	cli := testenv.Docker(t)
	ref := testenv.AppImage(t, cli, testenv.AppImageOptions{Tag: "c1"})
	repo := ref[:strings.LastIndex(ref, ":")]
	app := "completiontest-" + testenv.RunID()
	testenv.StartContainer(t, cli, testenv.ContainerOptions{Image: ref, NoStart: true,
		Labels: map[string]string{"deployctl.app": app, "deployctl.version": "c1"}})
	ctx := context.Background()
	rt, err := dockerutil.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()

	versions, err := rt.LabelValues(ctx, "deployctl.app="+app, "deployctl.version")
	if err != nil || !slices.Equal(versions, []string{"c1"}) {
		t.Errorf("LabelValues(deployctl.app=%s, deployctl.version) = %q, %v; want [c1]", app, versions, err)
	}
	apps, err := rt.LabelValues(ctx, "deployctl.app", "deployctl.app")
	if err != nil || !slices.Contains(apps, app) {
		t.Errorf("LabelValues(deployctl.app) = %q, %v; want %s among them", apps, err, app)
	}
	tags, err := rt.RepoTags(ctx, repo)
	if err != nil || !slices.Contains(tags, ref) {
		t.Errorf("RepoTags(%s) = %q, %v; want %s among them", repo, tags, err, ref)
	}
	if tags, err := rt.RepoTags(ctx, repo+"-none"); err != nil || len(tags) != 0 {
		t.Errorf("RepoTags of a repository with no images = %q, %v", tags, err)
	}
}
