# A service with a dynamic port: a tiny HTTP server on the port Nomad-style allocation gave it.
#   rawexec run examples/service.nomad.hcl        (Ctrl-C stops it)
#   curl http://127.0.0.1:<port>/                  (the port is in the task's output)
job "web" {
  type = "service"

  group "web" {
    network {
      port "http" {}
    }

    restart {
      attempts = 2
      interval = "1m"
      delay    = "2s"
      mode     = "fail"
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = "python3"
        args    = ["-u", "-m", "http.server", "${NOMAD_PORT_http}", "--bind", "${NOMAD_IP_http}",
                   "--directory", "${NOMAD_TASK_DIR}"]
      }

      env {
        PYTHONUNBUFFERED = "1"
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "3s"
    }

    task "announce" {
      driver = "raw_exec"

      lifecycle {
        hook = "poststart"
      }

      config {
        command = "/bin/sh"
        args    = ["-c", "echo \"serving on http://${NOMAD_ADDR_http}/\" | tee ${NOMAD_ALLOC_DIR}/url"]
      }
    }
  }
}
