job "cleanup" {
  type = "sysbatch"
  group "cleanup" {
    task "tmpwatch" {
      driver = "raw_exec"
      config {
        command = "/usr/bin/find"
        args    = ["/tmp", "-mtime", "+7", "-delete"]
      }
    }
  }
}
