// Command pulumi-language-nodejs is gitops-stages' Node.js language host for the Pulumi engine.
//
// Why it exists: the official host lives in its own Go module
// (github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3), which the module proxy
// reachable from build machines does not serve. This host implements the part of the
// LanguageRuntime protocol that `pulumi preview|up|refresh|destroy` need for a Node.js program:
// it reports the provider plugins the program's node_modules declare and runs the program through
// the `cmd/run` entry point that ships inside @pulumi/pulumi, exactly as the official host does.
// Where the user already has an official Pulumi CLI distribution, its own host is used instead.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// exitAfterUserActionableMessage is the exit code @pulumi/pulumi's cmd/run uses after it has
// already printed an error the user can act on; the engine must then not add another message.
const exitAfterUserActionableMessage = 32

func main() {
	// Older engines passed these flags; accept them so any engine version can start this host.
	flag.String("tracing", "", "ignored: tracing endpoint")
	flag.String("root", "", "ignored: the project root comes from the engine's requests")
	flag.Bool("typescript", true, "ignored: set runtime.options.typescript in Pulumi.yaml")
	flag.Parse()

	engineAddress := ""
	if args := flag.Args(); len(args) > 0 {
		engineAddress = args[0]
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cancelChannel := make(chan bool)
	go func() {
		<-ctx.Done()
		close(cancelChannel)
	}()
	// The engine may die without telling us; the health check ends this process then, so no
	// orphaned host survives a killed `pulumi up`.
	if engineAddress != "" {
		if err := rpcutil.Healthcheck(ctx, engineAddress, 5*time.Minute, cancel); err != nil {
			fail(fmt.Errorf("could not start the health check of the engine: %w", err))
		}
	}

	host := &nodeHost{engineAddress: engineAddress}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancelChannel,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		fail(fmt.Errorf("could not start the language host's RPC server: %w", err))
	}
	// The engine reads the port from our first line of standard output.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fail(fmt.Errorf("the language host's RPC server stopped: %w", err))
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: %v\n", err)
	os.Exit(1)
}

type nodeHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	engineAddress string
	mu            sync.Mutex
	rootDirectory string
}

// Handshake records the project's root directory; newer engines send it here instead of a flag.
func (h *nodeHost) Handshake(_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.EngineAddress != "" {
		h.engineAddress = req.EngineAddress
	}
	if req.RootDirectory != nil {
		h.rootDirectory = *req.RootDirectory
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *nodeHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

// GetRequiredPackages lists every resource plugin declared by a package in the program's
// node_modules ({"pulumi": {"resource": true, "name", "version"}} in its package.json), so the
// engine can load them before the program runs.
func (h *nodeHost) GetRequiredPackages(_ context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	plugins, err := requiredPlugins(programDirectory(req.GetInfo()))
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPackagesResponse{}
	for _, p := range plugins {
		resp.Packages = append(resp.Packages, &pulumirpc.PackageDependency{
			Name: p.Name, Kind: p.Kind, Version: p.Version, Server: p.Server,
		})
	}
	return resp, nil
}

// GetRequiredPlugins is the older form of GetRequiredPackages, still called by some engines.
func (h *nodeHost) GetRequiredPlugins(_ context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	dir := programDirectory(req.GetInfo())
	if dir == "" {
		dir = req.GetProgram() //nolint:staticcheck // engines before ProgramInfo send only this
	}
	plugins, err := requiredPlugins(dir)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.GetRequiredPluginsResponse{Plugins: plugins}, nil
}

func programDirectory(info *pulumirpc.ProgramInfo) string {
	if info == nil {
		return ""
	}
	return info.GetProgramDirectory()
}

// GetProgramDependencies reports the npm packages installed for the program (`pulumi about`).
func (h *nodeHost) GetProgramDependencies(_ context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	root, err := findNodeModules(programDirectory(req.GetInfo()))
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetProgramDependenciesResponse{}
	err = eachPackage(root, func(_ string, pkg packageJSON) {
		resp.Dependencies = append(resp.Dependencies, &pulumirpc.DependencyInfo{Name: pkg.Name, Version: pkg.Version})
	})
	return resp, err
}

// About describes the Node.js runtime for `pulumi about`.
func (h *nodeHost) About(ctx context.Context, _ *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("could not find node on PATH")
	}
	out, err := exec.CommandContext(ctx, nodeBin, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("could not run %s --version: %w", nodeBin, err)
	}
	return &pulumirpc.AboutResponse{Executable: nodeBin, Version: strings.TrimPrefix(strings.TrimSpace(string(out)), "v")}, nil
}

// InstallDependencies runs `npm install` in the program's directory (used by `pulumi install`).
func (h *nodeHost) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	srv grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	dir := programDirectory(req.GetInfo())
	if dir == "" {
		dir = req.GetDirectory() //nolint:staticcheck // older engines
	}
	cmd := exec.CommandContext(srv.Context(), "npm", "install", "--no-audit", "--no-fund")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if sendErr := srv.Send(&pulumirpc.InstallDependenciesResponse{Stdout: out}); sendErr != nil {
		return sendErr
	}
	if err != nil {
		return fmt.Errorf("npm install in %s failed: %w", dir, err)
	}
	return nil
}

// Run starts the program under @pulumi/pulumi's cmd/run, which connects back to the engine's
// resource monitor; its output goes to our standard streams, which the engine shows the user.
func (h *nodeHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	h.mu.Lock()
	engineAddress, rootDirectory := h.engineAddress, h.rootDirectory
	h.mu.Unlock()
	if info != nil && info.GetRootDirectory() != "" {
		rootDirectory = info.GetRootDirectory()
	}
	// The engine sends the program's directory as pwd and the entry point relative to it ("."
	// lets @pulumi/pulumi's cmd/run take package.json's main or the folder's index).
	pwd := req.GetPwd()
	if pwd == "" {
		pwd = programDirectory(info)
	}
	if pwd == "" {
		pwd = rootDirectory
	}
	entry := "."
	if info != nil && info.GetEntryPoint() != "" {
		entry = info.GetEntryPoint()
	}
	options := runtimeOptions(info)

	nodeBin, err := exec.LookPath("node")
	if err != nil {
		return &pulumirpc.RunResponse{Error: "could not find node on PATH: install Node.js 20 or later"}, nil
	}
	runPath, err := resolveModule(ctx, nodeBin, pwd, "@pulumi/pulumi/cmd/run")
	if err != nil {
		return &pulumirpc.RunResponse{Error: "could not find @pulumi/pulumi from " + pwd +
			": run `npm install` in the project first"}, nil
	}

	configJSON, err := json.Marshal(legacyConfigKeys(req.GetConfig()))
	if err != nil {
		return nil, fmt.Errorf("serialising config: %w", err)
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretKeysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("serialising secret config keys: %w", err)
	}

	args := append(strings.Fields(options.nodeargs), runPath)
	add := func(flag, value string) {
		if value != "" {
			args = append(args, "--"+flag, value)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", engineAddress)
	add("organization", req.GetOrganization())
	add("project", req.GetProject())
	add("root-directory", rootDirectory)
	add("stack", req.GetStack())
	add("pwd", pwd)
	if req.GetDryRun() {
		args = append(args, "--dry-run")
	}
	add("query-mode", fmt.Sprint(req.GetQueryMode()))
	add("parallel", fmt.Sprint(req.GetParallel()))
	args = append(args, entry)
	args = append(args, req.GetArgs()...)

	env := append(os.Environ(),
		"PULUMI_CONFIG="+string(configJSON),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeysJSON),
	)
	if options.typescript {
		env = append(env, "PULUMI_NODEJS_TYPESCRIPT=true")
	}
	if options.tsconfig != "" {
		// runtime.options.tsconfig is relative to Pulumi.yaml, not to the program's folder.
		tsconfig := options.tsconfig
		if !filepath.IsAbs(tsconfig) && rootDirectory != "" {
			tsconfig = filepath.Join(rootDirectory, tsconfig)
		}
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+tsconfig)
	}

	cmd := exec.CommandContext(ctx, nodeBin, args...) // #nosec G204 -- arguments come from the engine
	cmd.Dir = pwd
	cmd.Env = env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		// Node does not flush process.stdout writes synchronously before exiting.
		_ = os.Stdout.Sync()
		_ = os.Stderr.Sync()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if exitErr.ExitCode() == exitAfterUserActionableMessage {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode())}, nil
		}
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("could not run node: %v", err)}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

type nodeOptions struct {
	typescript bool
	tsconfig   string
	nodeargs   string
}

// runtimeOptions reads `runtime.options` of Pulumi.yaml; TypeScript support is on by default,
// as with the official host.
func runtimeOptions(info *pulumirpc.ProgramInfo) nodeOptions {
	opts := nodeOptions{typescript: true}
	if info == nil || info.GetOptions() == nil {
		return opts
	}
	fields := info.GetOptions().GetFields()
	if v, ok := fields["typescript"]; ok {
		if b, isBool := v.GetKind().(*structpb.Value_BoolValue); isBool {
			opts.typescript = b.BoolValue
		}
	}
	if v, ok := fields["tsconfig"]; ok {
		opts.tsconfig = v.GetStringValue()
	}
	if v, ok := fields["nodeargs"]; ok {
		opts.nodeargs = v.GetStringValue()
	}
	return opts
}

// legacyConfigKeys presents config keys as "<namespace>:config:<name>", the form every version of
// @pulumi/pulumi understands.
func legacyConfigKeys(cfg map[string]string) map[string]string {
	out := make(map[string]string, len(cfg))
	for k, v := range cfg {
		key, err := config.ParseKey(k)
		if err != nil {
			out[k] = v
			continue
		}
		out[key.Namespace()+":config:"+key.Name()] = v
	}
	return out
}

func resolveModule(ctx context.Context, nodeBin, dir, module string) (string, error) {
	cmd := exec.CommandContext(ctx, nodeBin, "-e", "process.stdout.write(require.resolve(process.argv[1]))", module)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	return string(out), nil
}

type packageJSON struct {
	Name    string          `json:"name"`
	Version string          `json:"version"`
	Pulumi  json.RawMessage `json:"pulumi"`
}

type pulumiPackageInfo struct {
	Resource bool   `json:"resource"`
	Name     string `json:"name"`
	Version  string `json:"version"`
	Server   string `json:"server"`
}

// findNodeModules walks up from dir to the nearest node_modules folder, as Node's resolution does.
func findNodeModules(dir string) (string, error) {
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return "", err
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		candidate := filepath.Join(dir, "node_modules")
		if st, err := os.Stat(candidate); err == nil && st.IsDir() {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", status.Errorf(codes.FailedPrecondition,
				"no node_modules folder above the program: run `npm install` first")
		}
		dir = parent
	}
}

// eachPackage calls fn for every package directly under node_modules, scoped ones included.
func eachPackage(nodeModules string, fn func(dir string, pkg packageJSON)) error {
	entries, err := os.ReadDir(nodeModules)
	if err != nil {
		return err
	}
	visit := func(dir string) {
		data, err := os.ReadFile(filepath.Join(dir, "package.json"))
		if err != nil {
			return
		}
		var pkg packageJSON
		if json.Unmarshal(data, &pkg) == nil {
			fn(dir, pkg)
		}
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		full := filepath.Join(nodeModules, name)
		if strings.HasPrefix(name, "@") {
			scoped, err := os.ReadDir(full)
			if err != nil {
				continue
			}
			for _, s := range scoped {
				visit(filepath.Join(full, s.Name()))
			}
			continue
		}
		visit(full)
	}
	return nil
}

func requiredPlugins(programDir string) ([]*pulumirpc.PluginDependency, error) {
	nodeModules, err := findNodeModules(programDir)
	if err != nil {
		return nil, err
	}
	seen := map[string]*pulumirpc.PluginDependency{}
	err = eachPackage(nodeModules, func(_ string, pkg packageJSON) {
		if len(pkg.Pulumi) == 0 {
			return
		}
		var info pulumiPackageInfo
		if json.Unmarshal(pkg.Pulumi, &info) != nil || !info.Resource {
			return
		}
		name := info.Name
		if name == "" {
			name = strings.TrimPrefix(pkg.Name, "@pulumi/")
		}
		v := info.Version
		if v == "" {
			v = pkg.Version
		}
		if v != "" && !strings.HasPrefix(v, "v") {
			v = "v" + v
		}
		seen[name+"@"+v] = &pulumirpc.PluginDependency{Name: name, Kind: "resource", Version: v, Server: info.Server}
	})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*pulumirpc.PluginDependency, 0, len(keys))
	for _, k := range keys {
		out = append(out, seen[k])
	}
	return out, nil
}
