# A batch job that prints a few lines and exits 0:  rawexec run examples/hello.nomad.hcl
variable "greeting" {
  type    = string
  default = "hello"
}

job "hello" {
  type = "batch"

  group "greet" {
    task "say" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "echo \"${var.greeting} from $NOMAD_TASK_NAME in alloc $NOMAD_SHORT_ALLOC_ID\"; echo \"job $NOMAD_JOB_NAME, task dir $NOMAD_TASK_DIR\"; echo done"]
      }
    }
  }
}
