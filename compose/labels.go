package compose

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The labels compose reads on a container (compose's pkg/api labels.go).
const (
	LabelProject     = "com.docker.compose.project"
	LabelService     = "com.docker.compose.service"
	LabelNumber      = "com.docker.compose.container-number"
	LabelOneoff      = "com.docker.compose.oneoff"
	LabelConfigHash  = "com.docker.compose.config-hash"
	LabelImage       = "com.docker.compose.image"
	LabelVersion     = "com.docker.compose.version"
	LabelWorkingDir  = "com.docker.compose.project.working_dir"
	LabelConfigFiles = "com.docker.compose.project.config_files"
	LabelEnvFile     = "com.docker.compose.project.environment_file"
	LabelDependsOn   = "com.docker.compose.depends_on"
)

// ComposeVersion is the compose release whose labels and config hash
// these are (it links compose-go v2.9.1, as deployctl does).
const ComposeVersion = "2.40.3"

// ContainerLabels are the labels `docker compose up` gives container
// number n of the service (its own labels included), with imageID the
// local ID of the image the service names (com.docker.compose.image,
// which compose compares too) and envFiles the --env-file values, if any
// were given. With them, `docker compose ps` and `logs` show the
// container, and a later `docker compose up` with the same files and
// variables finds it up to date.
func ContainerLabels(s *Service, n int, imageID string, envFiles []string) (map[string]string, error) {
	hash, err := ServiceHash(s.Config)
	if err != nil {
		return nil, fmt.Errorf("compose: the config hash of %s: %w", s.Name(), err)
	}
	out := map[string]string{}
	for k, v := range s.Config.Labels {
		out[k] = v
	}
	out[LabelProject] = s.Project.Name
	out[LabelService] = s.Name()
	out[LabelVersion] = ComposeVersion
	out[LabelWorkingDir] = s.Project.WorkingDir
	out[LabelConfigFiles] = strings.Join(s.Project.ComposeFiles, ",")
	if len(envFiles) > 0 {
		out[LabelEnvFile] = strings.Join(envFiles, ",")
	}
	out[LabelOneoff] = "False"
	out[LabelConfigHash] = hash
	out[LabelNumber] = strconv.Itoa(n)
	if imageID != "" {
		out[LabelImage] = imageID
	}
	var deps []string
	for name, d := range s.Config.DependsOn {
		deps = append(deps, fmt.Sprintf("%s:%s:%t", name, d.Condition, d.Restart))
	}
	slices.Sort(deps)
	out[LabelDependsOn] = strings.Join(deps, ",")
	return out, nil
}

// ContainerName is the name compose gives container number n of the
// service: <project>-<service>-<n>.
func ContainerName(s *Service, n int) string {
	return fmt.Sprintf("%s-%s-%d", s.Project.Name, s.Name(), n)
}
