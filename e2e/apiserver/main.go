// Command apiserver-harness runs a real kube-apiserver backed by an embedded etcd on
// 127.0.0.1, for the cloud-controller-manager's end-to-end tests.
//
// It writes a kubeconfig (bearer token; the CA verifies the serving certificate) into --dir,
// prints "READY <kubeconfig>" on stdout once /readyz answers, and on SIGTERM/SIGINT - or when
// its stdin reaches EOF with --exit-on-stdin-close, i.e. when the test process that spawned it
// dies without cleaning up - stops the apiserver and etcd and removes what it created.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "apiserver-harness: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "working directory (default: a new temporary directory, removed on exit)")
	port := flag.Int("port", 0, "apiserver secure port on 127.0.0.1 (0 = a free port)")
	stdinClose := flag.Bool("exit-on-stdin-close", false, "shut down when stdin reaches EOF")
	verbose := flag.Bool("verbose", false, "keep the apiserver's own logs (default: errors only)")
	keep := flag.Bool("keep-state", false, "with --dir: keep etcd's data and the credentials, so a second run on the same --dir and --port is a restart of the same cluster")
	flag.Parse()

	// Registered before the apiserver's own handler so that both see the signal.
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	removeDir := false
	if *dir == "" {
		d, err := os.MkdirTemp("", "apiserver-harness-")
		if err != nil {
			return err
		}
		*dir, removeDir = d, true
	}
	ws := workspace{root: *dir}
	for _, sub := range []string{"etcd", "pki"} {
		if err := os.MkdirAll(ws.path(sub), 0o700); err != nil {
			return err
		}
	}
	defer func() {
		if removeDir {
			os.RemoveAll(ws.root)
		} else if !*keep {
			// Keep the directory (the caller owns it) but not the state: a rerun starts clean.
			os.RemoveAll(ws.path("etcd"))
		}
	}()

	etcdPort, err := freePort()
	if err != nil {
		return err
	}
	etcd, err := startEtcd(ws.path("etcd"), etcdPort)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()

	if *port == 0 {
		if *port, err = freePort(); err != nil {
			return err
		}
	}
	token, err := ws.credentials(*keep)
	if err != nil {
		return err
	}

	cmd := app.NewAPIServerCommand()
	cmd.SetArgs(apiserverArgs(ws, etcdPort, *port, *verbose))
	apiDone := make(chan error, 1)
	go func() { apiDone <- cmd.Execute() }()

	kubeconfig := ws.path("kubeconfig")
	if err := writeKubeconfig(kubeconfig, *port, ws.path("pki", "apiserver.crt"), token); err != nil {
		return err
	}
	if err := waitReady(kubeconfig, apiDone, 90*time.Second); err != nil {
		return err
	}
	fmt.Printf("READY %s\n", kubeconfig)

	eof := make(chan struct{})
	if *stdinClose {
		go func() { io.Copy(io.Discard, os.Stdin); close(eof) }()
	}
	select {
	case sig := <-stop:
		fmt.Fprintf(os.Stderr, "apiserver-harness: %v, shutting down\n", sig)
	case <-eof:
		fmt.Fprintln(os.Stderr, "apiserver-harness: stdin closed, shutting down")
		// The apiserver only stops on its own signal context; deliver the signal to ourselves.
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
	case err := <-apiDone:
		return fmt.Errorf("kube-apiserver exited: %v", err)
	}
	select {
	case <-apiDone:
	case <-time.After(20 * time.Second):
		fmt.Fprintln(os.Stderr, "apiserver-harness: kube-apiserver did not stop within 20s")
	}
	return nil
}

type workspace struct{ root string }

func (w workspace) path(parts ...string) string {
	return filepath.Join(append([]string{w.root}, parts...)...)
}

// credentials returns the admin token: with keep, the one an earlier run on this directory
// wrote, if any (a restart: clients keep working); otherwise a new one (writeCredentials).
func (w workspace) credentials(keep bool) (string, error) {
	if keep {
		line, err := os.ReadFile(w.path("tokens.csv"))
		if _, keyErr := os.Stat(w.path("sa.key")); err == nil && keyErr == nil {
			if token, _, ok := strings.Cut(string(line), ","); ok {
				return token, nil
			}
		}
	}
	return w.writeCredentials()
}

// writeCredentials writes the service-account signing key and a static admin token file and
// returns the token.
func (w workspace) writeCredentials() (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(w.path("sa.key"), keyPEM, 0o600); err != nil {
		return "", err
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := hex.EncodeToString(raw)
	line := fmt.Sprintf("%s,admin,admin,system:masters\n", token)
	return token, os.WriteFile(w.path("tokens.csv"), []byte(line), 0o600)
}

func apiserverArgs(w workspace, etcdPort, port int, verbose bool) []string {
	args := []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + w.path("pki"),
		"--token-auth-file=" + w.path("tokens.csv"),
		"--authorization-mode=Node,RBAC",
		fmt.Sprintf("--service-account-issuer=https://127.0.0.1:%d", port),
		"--service-account-key-file=" + w.path("sa.key"),
		"--service-account-signing-key-file=" + w.path("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
	}
	if !verbose {
		args = append(args, "-v=0")
	}
	return args
}

func startEtcd(dir string, port int) (*embed.Etcd, error) {
	peerPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Dir = dir
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	cfg.WatchProgressNotifyInterval = 5 * time.Second

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("not ready within 60s")
	}
}

func writeKubeconfig(path string, port int, caFile, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["harness"] = &clientcmdapi.Cluster{
		Server:               fmt.Sprintf("https://127.0.0.1:%d", port),
		CertificateAuthority: caFile,
	}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["harness"] = &clientcmdapi.Context{Cluster: "harness", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "harness"
	return clientcmd.WriteToFile(*cfg, path)
}

// waitReady polls /readyz until it answers ok. The serving certificate is generated by the
// apiserver at start, so the client is built only once the CA file exists.
func waitReady(kubeconfig string, apiDone <-chan error, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var last error
	for {
		select {
		case err := <-apiDone:
			return fmt.Errorf("kube-apiserver exited before ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready within %v: %v", limit, last)
		case <-time.After(200 * time.Millisecond):
		}
		rest, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			last = err
			continue
		}
		cs, err := kubernetes.NewForConfig(rest)
		if err != nil {
			last = err
			continue
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		last = fmt.Errorf("%v %s", err, body)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
