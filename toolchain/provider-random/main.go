// Command pulumi-resource-random is gitops-stages' build of the `random` resource provider.
//
// Why it exists: the official provider (github.com/pulumi/pulumi-random/provider/v4, a Terraform
// bridge) is not served by the module proxy reachable from build machines, so the toolchain cannot
// build it there. This provider implements, for the @pulumi/random SDK, the resources that
// generate secrets: RandomPassword, RandomString, RandomBytes, RandomId, RandomInteger and
// RandomUuid, with the official provider's inputs, outputs, defaults and replacement rules
// (every input change, keepers included, replaces the resource). Values come from crypto/rand.
// On a machine with the official plugin, the toolchain uses that instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// version is set at link time to the version the pinned @pulumi/random SDK requests.
var version = "4.21.2"

func main() {
	flag.String("tracing", "", "ignored: tracing endpoint")
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
	// End with the engine: a provider left running after a killed update would hold the plugin.
	if engineAddress != "" {
		if err := rpcutil.Healthcheck(ctx, engineAddress, 5*time.Minute, cancel); err != nil {
			fail(fmt.Errorf("could not start the health check of the engine: %w", err))
		}
	}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancelChannel,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterResourceProviderServer(srv, plugin.NewProviderServer(&randomProvider{version: version}))
			return nil
		},
	})
	if err != nil {
		fail(fmt.Errorf("could not start the provider's RPC server: %w", err))
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fail(fmt.Errorf("the provider's RPC server stopped: %w", err))
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-resource-random: %v\n", err)
	os.Exit(1)
}
