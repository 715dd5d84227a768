# Every block and field rawexec models, with non-default values.
job "web" {
  name        = "web-frontend"
  type        = "service"
  namespace   = "apps"
  region      = "eu"
  datacenters = ["dc1", "dc2"]
  node_pool   = "edge"
  priority    = 70
  all_at_once = true

  meta {
    owner = "team-web"
    tier  = "front"
  }

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  constraint {
    distinct_hosts = true
  }

  update {
    max_parallel     = 2
    min_healthy_time = "30s"
    healthy_deadline = "10m"
    auto_revert      = true
    canary           = 1
  }

  group "api" {
    count          = 3
    shutdown_delay = "5s"

    meta = {
      group_key = "g"
    }

    constraint {
      attribute = "${meta.rack}"
      operator  = "regexp"
      value     = "r[0-9]+"
    }

    restart {
      attempts = 4
      interval = "10m"
      delay    = "20s"
      mode     = "delay"
    }

    reschedule {
      attempts       = 5
      interval       = "1h"
      delay          = "10s"
      delay_function = "fibonacci"
      max_delay      = "2m"
      unlimited      = false
    }

    ephemeral_disk {
      size    = 500
      sticky  = true
      migrate = true
    }

    network {
      mode = "host"
      port "http" {
        static = 8080
        to     = 80
      }
      port "metrics" {}
    }

    service {
      name     = "api"
      port     = "http"
      tags     = ["v1", "public"]
      provider = "nomad"
      check {
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    volume "data" {
      type      = "host"
      source    = "data"
      read_only = true
    }

    task "init" {
      driver = "raw_exec"
      lifecycle {
        hook    = "prestart"
        sidecar = false
      }
      config {
        command = "/bin/sh"
        args    = ["-c", "echo init > ${NOMAD_ALLOC_DIR}/data/ready"]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }

    task "srv" {
      driver = "raw_exec"
      user   = "nobody"
      leader = true

      config {
        command  = "/usr/local/bin/server"
        args     = ["--port", "${NOMAD_PORT_http}", "--host", "${attr.unique.hostname}"]
        work_dir = "/tmp"
      }

      env {
        LOG_LEVEL = "debug"
        DC        = "${node.datacenter}"
        HOME_DIR  = "${env["HOME"]}"
      }

      meta {
        role = "server"
      }

      artifact {
        source      = "https://example.com/server.tar.gz"
        destination = "local/bin"
        mode        = "dir"
        insecure    = false
        chown       = true
        options {
          checksum = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
          archive  = "tar.gz"
        }
        headers {
          Authorization = "Bearer abc"
        }
      }

      artifact {
        source      = "https://example.com/config.json"
        destination = "../alloc/data/config.json"
        mode        = "file"
      }

      logs {
        max_files     = 5
        max_file_size = 20
        disabled      = false
      }

      resources {
        cpu        = 500
        memory     = 256
        memory_max = 512
      }

      kill_timeout   = "1m30s"
      kill_signal    = "SIGTERM"
      shutdown_delay = "3s"

      restart {
        attempts = 1
      }

      template {
        data        = "port={{ env \"NOMAD_PORT_http\" }}"
        destination = "local/app.conf"
        change_mode = "signal"
        change_signal = "SIGHUP"
      }

      service {
        name = "srv-metrics"
        port = "metrics"
      }

      vault {
        policies = ["read-secrets"]
      }

      identity {
        env  = true
        file = true
      }

      volume_mount {
        volume      = "data"
        destination = "/srv/data"
        read_only   = true
      }
    }
  }
}
