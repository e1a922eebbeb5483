# The kind cluster and the marketpipe Helm release, as `make kind-up deploy` does by hand.
# Images are not built here: run `make images kind-load` (after the cluster exists) first, or
# point the values at a registry.

locals {
  repo_root = abspath("${path.module}/..")
}

resource "kind_cluster" "this" {
  name           = var.cluster_name
  node_image     = var.node_image
  wait_for_ready = true

  kind_config {
    kind        = "Cluster"
    api_version = "kind.x-k8s.io/v1alpha4"

    node {
      role = "control-plane"

      extra_port_mappings {
        container_port = 30080
        host_port      = 8080
        listen_address = "127.0.0.1"
      }

      extra_port_mappings {
        container_port = 30901
        host_port      = 9001
        listen_address = "127.0.0.1"
      }
    }

    dynamic "node" {
      for_each = range(var.workers)
      content {
        role = "worker"
      }
    }
  }
}

provider "helm" {
  kubernetes {
    host                   = kind_cluster.this.endpoint
    cluster_ca_certificate = kind_cluster.this.cluster_ca_certificate
    client_certificate     = kind_cluster.this.client_certificate
    client_key             = kind_cluster.this.client_key
  }
}

resource "helm_release" "marketpipe" {
  name             = var.release_name
  namespace        = var.namespace
  create_namespace = true
  chart            = "${local.repo_root}/charts/marketpipe"
  values           = [for f in var.values_files : file("${local.repo_root}/${f}")]
  wait             = true
  timeout          = var.timeout_seconds

  set {
    name  = "image.tag"
    value = var.image_tag
  }

  set {
    name  = "features.image.tag"
    value = var.image_tag
  }
}
