// goplughost: a tiny go-plugin host that launches nomad-driver-rawexec the way a Nomad client
// does (Nomad's handshake config, gRPC only) and exercises it over raw gRPC.
//
// Our own test code for nomad-rawexec (MPL-2.0 go-plugin as a library); built in GOPATH mode
// from Debian packages, offline: see build.sh. Output: one "KEY value..." line per check, then
// "DONE". Any failure prints "FAIL <reason>" and exits 1.
package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// rawCodec passes already-serialised protobuf bytes through, so no generated Go code is needed.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// hostPlugin is a client-only gRPC plugin: Dispense hands back the connection itself.
type hostPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (hostPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (hostPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return c, nil
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func unary(conn *grpc.ClientConn, method string, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []byte
	err := conn.Invoke(ctx, method, &req, &out, grpc.ForceCodec(rawCodec{}))
	return out, err
}

func firstOfStream(conn *grpc.ClientConn, method string, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel() // cancels the stream after the first message, as a client going away does
	desc := &grpc.StreamDesc{StreamName: method, ServerStreams: true}
	st, err := conn.NewStream(ctx, desc, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(&req); err != nil {
		return nil, err
	}
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	var out []byte
	err = st.RecvMsg(&out)
	return out, err
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: goplughost <plugin-executable> [args...]")
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "goplughost", Level: hclog.Trace, Output: os.Stderr})
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  2,
			MagicCookieKey:   "NOMAD_PLUGIN_MAGIC_COOKIE",
			MagicCookieValue: "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255",
		},
		Plugins:          map[string]plugin.Plugin{"base": hostPlugin{}, "driver": hostPlugin{}},
		Cmd:              exec.Command(os.Args[1], os.Args[2:]...),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
		StartTimeout:     20 * time.Second,
	})
	defer client.Kill()

	start := time.Now()
	rpcClient, err := client.Client()
	if err != nil {
		fail("handshake: %v", err)
	}
	fmt.Printf("HANDSHAKE ok %dms\n", time.Since(start).Milliseconds())
	if err := rpcClient.Ping(); err != nil {
		fail("health ping: %v", err)
	}
	fmt.Println("PING ok")

	raw, err := rpcClient.Dispense("base")
	if err != nil {
		fail("dispense: %v", err)
	}
	conn := raw.(*grpc.ClientConn)

	// go-plugin >= 1.1 opens StreamStdio on connect; Debian's 1.0.1 does not, so do it by hand.
	if _, err := firstOfStreamTimeout(conn, "/plugin.GRPCStdio/StreamStdio"); err != nil {
		fmt.Printf("STDIO open-and-cancel: %v\n", status.Code(err))
	}

	info, err := unary(conn, "/hashicorp.nomad.plugins.base.proto.BasePlugin/PluginInfo", nil)
	if err != nil {
		fail("PluginInfo: %v", err)
	}
	fmt.Printf("PLUGININFO %s\n", hex.EncodeToString(info))

	schema, err := unary(conn, "/hashicorp.nomad.plugins.base.proto.BasePlugin/ConfigSchema", nil)
	if err != nil {
		fail("ConfigSchema: %v", err)
	}
	fmt.Printf("CONFIGSCHEMA %s\n", hex.EncodeToString(schema))

	// SetConfig{msgpack_config: {"enabled": true}, plugin_api_version: "0.1.0"}
	cfg := []byte{0x81, 0xa7, 'e', 'n', 'a', 'b', 'l', 'e', 'd', 0xc3}
	req := append([]byte{0x0a, byte(len(cfg))}, cfg...)
	req = append(req, 0x1a, 5, '0', '.', '1', '.', '0')
	if _, err := unary(conn, "/hashicorp.nomad.plugins.base.proto.BasePlugin/SetConfig", req); err != nil {
		fail("SetConfig: %v", err)
	}
	fmt.Println("SETCONFIG ok")

	bad := []byte{0x0a, 1, 0xc1}
	_, err = unary(conn, "/hashicorp.nomad.plugins.base.proto.BasePlugin/SetConfig", bad)
	st, _ := status.FromError(err)
	fmt.Printf("SETCONFIG_BAD code=%s msg=%q\n", st.Code(), st.Message())

	fp, err := firstOfStream(conn, "/hashicorp.nomad.plugins.drivers.proto.Driver/Fingerprint", nil)
	if err != nil {
		fail("Fingerprint: %v", err)
	}
	fmt.Printf("FINGERPRINT %s\n", hex.EncodeToString(fp))

	// Optional: start a task (a serialised StartTaskRequest, hex, from the test) before Kill, so
	// the kill happens with a task and its helpers running, as at an agent restart.
	if reqHex := os.Getenv("GOPLUGHOST_START_TASK"); reqHex != "" {
		req, err := hex.DecodeString(reqHex)
		if err != nil {
			fail("GOPLUGHOST_START_TASK: %v", err)
		}
		resp, err := unary(conn, "/hashicorp.nomad.plugins.drivers.proto.Driver/StartTask", req)
		if err != nil {
			fail("StartTask: %v", err)
		}
		fmt.Printf("STARTTASK %s\n", hex.EncodeToString(resp))
	}

	kill := time.Now()
	client.Kill()
	fmt.Printf("KILL %dms exited=%v\n", time.Since(kill).Milliseconds(), client.Exited())
	fmt.Println("DONE")
}

func firstOfStreamTimeout(conn *grpc.ClientConn, method string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: method, ServerStreams: true}
	st, err := conn.NewStream(ctx, desc, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return nil, err
	}
	empty := []byte{}
	if err := st.SendMsg(&empty); err != nil {
		return nil, err
	}
	var out []byte
	err = st.RecvMsg(&out)
	return out, err
}
