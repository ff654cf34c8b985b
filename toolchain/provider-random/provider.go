package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/blang/semver"
)

type randomProvider struct {
	plugin.UnimplementedProvider
	version string
}

// kind describes one resource type: how to default and validate its inputs and how to generate
// its outputs from them.
type kind struct {
	// defaults fills in optional inputs the way the official provider does.
	defaults func(in resource.PropertyMap)
	// validate returns one failure per offending property.
	validate func(in resource.PropertyMap) []plugin.CheckFailure
	// generate returns the outputs (inputs included) and the resource's ID.
	generate func(in resource.PropertyMap) (resource.PropertyMap, resource.ID, error)
	// computed names the outputs that are unknown until creation.
	computed []string
}

var kinds = map[tokens.Type]kind{
	"random:index/randomPassword:RandomPassword": passwordKind(true),
	"random:index/randomString:RandomString":     passwordKind(false),
	"random:index/randomBytes:RandomBytes":       bytesKind(),
	"random:index/randomId:RandomId":             idKind(),
	"random:index/randomInteger:RandomInteger":   integerKind(),
	"random:index/randomUuid:RandomUuid":         uuidKind(),
}

func lookup(t tokens.Type) (kind, error) {
	k, ok := kinds[t]
	if !ok {
		supported := make([]string, 0, len(kinds))
		for name := range kinds {
			supported = append(supported, string(name))
		}
		sort.Strings(supported)
		return kind{}, fmt.Errorf("resource type %s is not supported by this build of the random provider "+
			"(supported: %v); install the official pulumi-resource-random plugin to use it", t, supported)
	}
	return k, nil
}

func (p *randomProvider) Close() error { return nil }

func (p *randomProvider) SignalCancellation(context.Context) error { return nil }

func (p *randomProvider) Pkg() tokens.Package { return "random" }

func (p *randomProvider) GetPluginInfo(context.Context) (plugin.PluginInfo, error) {
	v, err := semver.ParseTolerant(p.version)
	if err != nil {
		return plugin.PluginInfo{}, err
	}
	return plugin.PluginInfo{Version: &v}, nil
}

func (p *randomProvider) GetSchema(context.Context, plugin.GetSchemaRequest) (plugin.GetSchemaResponse, error) {
	return plugin.GetSchemaResponse{Schema: []byte(fmt.Sprintf(`{"name":"random","version":%q}`, p.version))}, nil
}

func (p *randomProvider) CheckConfig(_ context.Context, req plugin.CheckConfigRequest) (plugin.CheckConfigResponse, error) {
	return plugin.CheckConfigResponse{Properties: req.News}, nil
}

func (p *randomProvider) DiffConfig(context.Context, plugin.DiffConfigRequest) (plugin.DiffConfigResponse, error) {
	return plugin.DiffConfigResponse{Changes: plugin.DiffNone}, nil
}

func (p *randomProvider) Configure(context.Context, plugin.ConfigureRequest) (plugin.ConfigureResponse, error) {
	return plugin.ConfigureResponse{}, nil
}

func (p *randomProvider) Check(_ context.Context, req plugin.CheckRequest) (plugin.CheckResponse, error) {
	k, err := lookup(req.Type)
	if err != nil {
		return plugin.CheckResponse{}, err
	}
	in := req.News.Copy()
	k.defaults(in)
	if in.ContainsUnknowns() {
		return plugin.CheckResponse{Properties: in}, nil
	}
	return plugin.CheckResponse{Properties: in, Failures: k.validate(in)}, nil
}

// Diff replaces on any change of inputs: a generated value must never silently change in place.
func (p *randomProvider) Diff(_ context.Context, req plugin.DiffRequest) (plugin.DiffResponse, error) {
	olds := inputsOf(req.OldInputs, req.OldOutputs)
	diff := olds.Diff(req.NewInputs, func(key resource.PropertyKey) bool { return false })
	if diff == nil || !diff.AnyChanges() {
		return plugin.DiffResponse{Changes: plugin.DiffNone}, nil
	}
	keys := diff.ChangedKeys()
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	detailed := map[string]plugin.PropertyDiff{}
	for _, key := range keys {
		kind := plugin.DiffUpdateReplace
		if diff.Adds[key].V != nil {
			kind = plugin.DiffAddReplace
		} else if _, deleted := diff.Deletes[key]; deleted {
			kind = plugin.DiffDeleteReplace
		}
		detailed[string(key)] = plugin.PropertyDiff{Kind: kind, InputDiff: true}
	}
	return plugin.DiffResponse{
		Changes:      plugin.DiffSome,
		ReplaceKeys:  keys,
		ChangedKeys:  keys,
		DetailedDiff: detailed,
	}, nil
}

// inputsOf returns the old inputs, or for state written without them, the outputs.
func inputsOf(inputs, outputs resource.PropertyMap) resource.PropertyMap {
	if len(inputs) > 0 {
		return inputs
	}
	return outputs
}

func (p *randomProvider) Create(_ context.Context, req plugin.CreateRequest) (plugin.CreateResponse, error) {
	k, err := lookup(req.Type)
	if err != nil {
		return plugin.CreateResponse{}, err
	}
	if req.Preview {
		out := req.Properties.Copy()
		for _, name := range k.computed {
			out[resource.PropertyKey(name)] = resource.MakeComputed(resource.NewStringProperty(""))
		}
		return plugin.CreateResponse{Properties: out, Status: resource.StatusOK}, nil
	}
	out, id, err := k.generate(req.Properties)
	if err != nil {
		return plugin.CreateResponse{}, err
	}
	return plugin.CreateResponse{ID: id, Properties: out, Status: resource.StatusOK}, nil
}

// Read returns the stored state: a random value exists only in Pulumi's state, so refresh never
// finds drift.
func (p *randomProvider) Read(_ context.Context, req plugin.ReadRequest) (plugin.ReadResponse, error) {
	return plugin.ReadResponse{
		ReadResult: plugin.ReadResult{ID: req.ID, Inputs: req.Inputs, Outputs: req.State},
		Status:     resource.StatusOK,
	}, nil
}

// Update is never needed (every change replaces) but is answered for engines that call it on
// no-op diffs.
func (p *randomProvider) Update(_ context.Context, req plugin.UpdateRequest) (plugin.UpdateResponse, error) {
	return plugin.UpdateResponse{Properties: req.OldOutputs, Status: resource.StatusOK}, nil
}

func (p *randomProvider) Delete(context.Context, plugin.DeleteRequest) (plugin.DeleteResponse, error) {
	return plugin.DeleteResponse{Status: resource.StatusOK}, nil
}

