package e2e

import (
	"context"

	"github.com/deployctl/deployctl/deploy"
	"github.com/deployctl/deployctl/dockerutil"
)

func newRuntime() (deploy.Runtime, error) { return dockerutil.New(context.Background()) }
