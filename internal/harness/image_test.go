package harness

import (
	"errors"
	"testing"
)

func TestLostBuildCache(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want bool
	}{
		// From a CI run: another test removed the cached intermediate.
		{"failed to get digest sha256:b739c812ce0e6927b9056dd26c584015bbed272a22f5142178b2aa3ef5ae19d5: open /var/lib/docker/image/fuse-overlayfs/imagedb/content/sha256/b739c812ce0e6927b9056dd26c584015bbed272a22f5142178b2aa3ef5ae19d5: no such file or directory", true},
		{"No such image: sha256:b739c812ce0e6927b9056dd26c584015bbed272a22f5142178b2aa3ef5ae19d5", true},
		{"COPY failed: file not found in build context or excluded by .dockerignore: stat app: file does not exist", false},
		{"Dockerfile parse error line 3: unknown instruction: ENTRYPIONT", false},
		{"open /var/lib/docker/tmp/docker-builder123/app: no such file or directory", false},
	} {
		if got := LostBuildCache(errors.New(tc.msg)); got != tc.want {
			t.Errorf("LostBuildCache(%q) = %v, want %v", tc.msg, got, tc.want)
		}
	}
}
