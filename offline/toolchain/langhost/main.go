// Command pulumi-language-python is a launcher for the Python language host
// built from sdk/v3 v3.68.0 (see go.mod).
//
// That host reads the project's runtime options only from command-line flags
// (-root, -virtualenv), which Pulumi CLIs of that era passed to it. Current
// CLIs send the options over gRPC instead, so the old host would silently
// ignore `runtime.options.virtualenv` in Pulumi.yaml and run the program with
// whatever `python3` is on PATH. This launcher restores the old protocol: it
// finds Pulumi.yaml from the working directory the CLI starts the host in,
// and execs the real host (../libexec/pulumi-language-python, next to its
// pulumi-language-python-exec script) with -root and -virtualenv.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"
)

const hostName = "pulumi-language-python"

// project is the part of Pulumi.yaml this launcher needs. `runtime` is either
// a string (the runtime name) or a mapping with `name` and `options`.
type project struct {
	Runtime yaml.Node `yaml:"runtime"`
}

func main() {
	host, err := realHost()
	if err != nil {
		fail(err)
	}

	args := []string{host}
	if !hasFlag(os.Args[1:], "root") && !hasFlag(os.Args[1:], "virtualenv") {
		flags, err := projectFlags()
		if err != nil {
			fail(err)
		}
		args = append(args, flags...)
	}
	args = append(args, os.Args[1:]...)

	if err := syscall.Exec(host, args, os.Environ()); err != nil {
		fail(fmt.Errorf("exec %s: %w", host, err))
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "%s (launcher): %v\n", hostName, err)
	os.Exit(1)
}

// realHost returns ../libexec/pulumi-language-python relative to this binary.
func realHost() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	host := filepath.Join(filepath.Dir(filepath.Dir(self)), "libexec", hostName)
	if _, err := os.Stat(host); err != nil {
		return "", fmt.Errorf("language host not found: %w", err)
	}
	return host, nil
}

// hasFlag reports whether args already set the flag `name` (Go flag syntax).
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			return false // flags end at the first positional argument
		}
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// projectFlags locates Pulumi.yaml from the working directory upwards and
// returns the flags for the project root and its virtualenv option.
func projectFlags() ([]string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	for {
		for _, name := range []string{"Pulumi.yaml", "Pulumi.yml"} {
			path := filepath.Join(dir, name)
			data, err := os.ReadFile(path)
			if errors.Is(err, os.ErrNotExist) {
				continue
			} else if err != nil {
				return nil, err
			}
			venv, err := virtualenvOption(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			flags := []string{"-root=" + dir}
			if venv != "" {
				flags = append(flags, "-virtualenv="+venv)
			}
			return flags, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, nil // not inside a project: run the host as is
		}
		dir = parent
	}
}

func virtualenvOption(data []byte) (string, error) {
	var p project
	if err := yaml.Unmarshal(data, &p); err != nil {
		return "", err
	}
	if p.Runtime.Kind != yaml.MappingNode {
		return "", nil
	}
	var runtime struct {
		Options map[string]interface{} `yaml:"options"`
	}
	if err := p.Runtime.Decode(&runtime); err != nil {
		return "", err
	}
	switch v := runtime.Options["virtualenv"].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", fmt.Errorf("runtime.options.virtualenv must be a string, not %T", v)
	}
}
