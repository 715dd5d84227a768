job "report" {
  type = "batch"

  periodic {
    crons            = ["0 3 * * *"]
    prohibit_overlap = true
    time_zone        = "Europe/Berlin"
  }

  group "report" {
    task "run" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
