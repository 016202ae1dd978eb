// ocibuild writes an OCI image of a root filesystem directory, without a container engine:
// one layer holding the directory (owned by root, timestamps zeroed, so the same files give
// the same image), a config with the user, entrypoint and port, as an OCI image layout and a
// tarball `docker load` and `podman load` read; with -push, it also pushes to a registry
// (credentials from ~/.docker/config.json, as docker login writes them).
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	rootfs := flag.String("rootfs", "", "the directory that becomes the image's filesystem")
	layoutDir := flag.String("layout", "", "where to write the OCI image layout")
	tarPath := flag.String("tar", "", "where to write the loadable tarball")
	tag := flag.String("tag", "cloud-controller-manager:dev", "the image's name and tag")
	entrypoint := flag.String("entrypoint", "/usr/local/bin/cloud-controller-manager", "the entrypoint")
	user := flag.String("user", "65532:65532", "the user the image runs as")
	version := flag.String("version", "", "the org.opencontainers.image.version label")
	push := flag.String("push", "", "a registry reference to push to (optional)")
	flag.Parse()
	if *rootfs == "" || *layoutDir == "" || *tarPath == "" {
		log.Fatal("-rootfs, -layout and -tar are required")
	}

	layerBytes, err := tarDir(*rootfs)
	if err != nil {
		log.Fatalf("packing %s: %v", *rootfs, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		log.Fatal(err)
	}
	config := &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: time.Unix(0, 0).UTC()},
		Config: v1.Config{
			User:         *user,
			Entrypoint:   []string{*entrypoint},
			Env:          []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
			ExposedPorts: map[string]struct{}{"10258/tcp": {}},
			WorkingDir:   "/",
			Labels: map[string]string{
				"org.opencontainers.image.title":   "cloud-controller-manager",
				"org.opencontainers.image.version": *version,
			},
		},
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(base, config)
	if err != nil {
		log.Fatal(err)
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: "image/build.sh (ocibuild)"}})
	if err != nil {
		log.Fatal(err)
	}
	ref, err := name.ParseReference(*tag)
	if err != nil {
		log.Fatalf("-tag %q: %v", *tag, err)
	}

	if err := os.RemoveAll(*layoutDir); err != nil {
		log.Fatal(err)
	}
	path, err := layout.Write(*layoutDir, empty.Index)
	if err != nil {
		log.Fatal(err)
	}
	annotations := map[string]string{"org.opencontainers.image.ref.name": ref.Identifier()}
	if err := path.AppendImage(img, layout.WithAnnotations(annotations)); err != nil {
		log.Fatal(err)
	}
	if err := tarball.WriteToFile(*tarPath, ref, img); err != nil {
		log.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("image %s %s\n  OCI layout: %s\n  tarball:    %s\n", *tag, digest, *layoutDir, *tarPath)

	if *push != "" {
		target, err := name.ParseReference(*push)
		if err != nil {
			log.Fatalf("-push %q: %v", *push, err)
		}
		if err := remote.Write(target, img, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			log.Fatalf("pushing %s: %v", target, err)
		}
		fmt.Printf("  pushed:     %s@%s\n", target.Name(), digest)
	}
}

// tarDir packs dir as a layer: sorted paths, owner root, zero timestamps, modes as on disk.
func tarDir(dir string) ([]byte, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(dir, p)
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return nil, err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return nil, err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := w.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(w, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
