// stargz-bench: the stargz snapshotter as a containerd proxy snapshotter, for bench/e2e.ts.
//
// Debian packages stargz-snapshotter's Go sources but not its daemon (containerd-stargz-grpc), so
// this small main serves github.com/containerd/stargz-snapshotter/service on a unix socket with the
// library's defaults plus the TOML config file given (the bench writes the resolver's mirror entries
// for its plain-HTTP loopback registry there). bench/lib/stargz.ts builds it in GOPATH mode against
// /usr/share/gocode, leaving out service/resolver/cri.go (it needs k8s.io/cri-api, not packaged).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/log"
	"github.com/containerd/stargz-snapshotter/service"
	"github.com/pelletier/go-toml"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
)

func main() {
	address := flag.String("address", "", "unix socket to serve the snapshots API on")
	root := flag.String("root", "", "state directory (snapshots, FUSE mounts, caches)")
	configPath := flag.String("config", "", "TOML config (the stargz daemon's format); optional")
	logLevel := flag.String("log-level", "info", "logrus level")
	flag.Parse()
	if *address == "" || *root == "" {
		fmt.Fprintln(os.Stderr, "usage: stargz-bench --address <socket> --root <dir> [--config <toml>]")
		os.Exit(2)
	}
	if lvl, err := logrus.ParseLevel(*logLevel); err == nil {
		logrus.SetLevel(lvl)
	}
	ctx := log.WithLogger(context.Background(), log.L)

	var cfg service.Config
	if *configPath != "" {
		tree, err := toml.LoadFile(*configPath)
		if err == nil {
			err = tree.Unmarshal(&cfg)
		}
		if err != nil {
			log.G(ctx).WithError(err).Fatalf("config %s", *configPath)
		}
	}
	if err := os.MkdirAll(*root, 0700); err != nil {
		log.G(ctx).WithError(err).Fatal("root")
	}
	sn, err := service.NewStargzSnapshotterService(ctx, *root, &cfg)
	if err != nil {
		log.G(ctx).WithError(err).Fatal("snapshotter")
	}

	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	_ = os.Remove(*address)
	l, err := net.Listen("unix", *address)
	if err != nil {
		log.G(ctx).WithError(err).Fatal("listen")
	}
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
		<-c
		rpc.Stop()
	}()
	log.G(ctx).Infof("stargz-bench serving on %s", *address)
	if err := rpc.Serve(l); err != nil {
		log.G(ctx).WithError(err).Error("serve")
	}
	// Close unmounts the layers' FUSE mounts
	if err := sn.Close(); err != nil {
		log.G(ctx).WithError(err).Error("close")
	}
}
