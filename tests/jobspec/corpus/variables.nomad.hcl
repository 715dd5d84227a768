variable "image_version" {
  type        = string
  description = "the release to run"
  default     = "1.4.2"
}

variable "replicas" {
  type    = number
  default = 2

  validation {
    condition     = var.replicas >= 1 && var.replicas <= 10
    error_message = "replicas must be between 1 and 10."
  }
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "labels" {
  type = map(string)
  default = {
    team = "core"
  }
}

variable "debug" {
  type    = bool
  default = false
}

variable "region" {
  type = string
}

locals {
  app_dir   = "/opt/app-${var.image_version}"
  full_name = "${local.prefix}-${var.region}"
  prefix    = upper("svc")
  ports     = [for p in [8080, 8081] : tostring(p)]
}

job "vars" {
  datacenters = var.datacenters
  region      = var.region
  meta        = merge(var.labels, { version = var.image_version })

  group "app" {
    count = var.replicas

    task "app" {
      driver = "raw_exec"

      config {
        command = "${local.app_dir}/bin/app"
        args = concat(
          ["--name", local.full_name],
          var.debug ? ["--debug"] : [],
          ["--ports", join(",", local.ports)],
          [format("%s-%03d", "id", 7), lower("ABC"), replace("a-b-c", "-", "_"), trimspace("  x  ")],
          [lookup(var.labels, "team", "none"), lookup(var.labels, "missing", "none"), coalesce("", "fallback")],
          [tostring(length(var.datacenters)), jsonencode({ a = 1 }), jsondecode("{\"k\": \"v\"}").k],
          split(",", "p,q"),
          [tostring(tonumber("42") + 1), tostring(tobool("true"))],
          ["${NOMAD_TASK_DIR}/state", "${attr.cpu.arch}", "$${literal}"],
        )
      }

      env {
        BANNER = trimspace(file("banner.txt"))
        SCRIPT = <<-EOT
          #!/bin/sh
          echo "version ${var.image_version}"
          echo "alloc ${NOMAD_ALLOC_ID}"
          EOT
        RAW = <<EOF
plain "quotes" and \backslash ${upper("x")}
EOF
        TEMPLATE = "%{ if var.debug }debug%{ else }quiet%{ endif }/%{ for p in local.ports }${p};%{ endfor }"
      }
    }
  }
}
