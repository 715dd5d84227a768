# A batch job whose task first downloads an artifact over HTTP, then uses it.
#
# Serve the examples directory locally (in another terminal, from the repository root):
#
#   python3 -m http.server 8000 --bind 127.0.0.1 --directory examples/files
#
# then run:
#
#   rawexec run examples/artifact.nomad.hcl
#   rawexec run -var base_url=http://127.0.0.1:9000 examples/artifact.nomad.hcl   (another port)
#
# The archive is unpacked into the task's local/ dir (Nomad's default destination), with the
# checksum verified before anything is unpacked.
variable "base_url" {
  type    = string
  default = "http://127.0.0.1:8000"
}

job "artifact" {
  type = "batch"

  group "fetch" {
    task "show" {
      driver = "raw_exec"

      artifact {
        source = "${var.base_url}/greeting.tar.gz"
        options {
          checksum = "sha256:1822a137532c012ad14c8d90aeb307f9b4c274b3e973325a5a0f91109a566de5"
        }
      }

      config {
        command = "/bin/sh"
        args    = ["-c", "ls ${NOMAD_TASK_DIR}; cat ${NOMAD_TASK_DIR}/greeting/hello.txt"]
      }
    }
  }
}
