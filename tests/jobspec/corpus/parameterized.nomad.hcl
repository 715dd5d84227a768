job "dispatch-me" {
  type = "batch"

  parameterized {
    payload       = "required"
    meta_required = ["input"]
    meta_optional = ["mode"]
  }

  group "work" {
    task "work" {
      driver = "raw_exec"
      config {
        command = "/bin/cat"
        args    = ["${NOMAD_META_input}"]
      }
    }
  }
}
