# The seed's first example: run /bin/sleep 1 with raw_exec.
job "example" {
  datacenters = ["dc1"]
  type        = "batch"

  group "example" {
    task "sleep" {
      driver = "raw_exec"

      config {
        command = "/bin/sleep"
        args    = ["1"]
      }
    }
  }
}
