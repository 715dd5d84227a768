# The seed's second example (its checksum made valid hex: the seed's "…45ds45…" is rejected by Nomad):
# download a binary, verify its checksum, run it by relative name.
job "example" {
  datacenters = ["dc1"]

  group "example" {
    task "hello" {
      driver = "raw_exec"

      artifact {
        source = "https://internal.file.server/name-of-my-binary"
        options {
          checksum = "sha256:abd1234455d45555555555555555555555555555555555555555555555555a5a"
        }
      }

      config {
        command = "name-of-my-binary"
      }
    }
  }
}
