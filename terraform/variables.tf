variable "cluster_name" {
  description = "Name of the kind cluster."
  type        = string
  default     = "marketpipe"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be a DNS label of at most 32 characters."
  }
}

variable "node_image" {
  description = "kindest/node image of every node (the Kubernetes version)."
  type        = string
  default     = "kindest/node:v1.31.4@sha256:2cb39f7295fe7eafee0842b1052a599a4fb0f8bcf3f83d96c7f4864c357c6c30"

  validation {
    condition     = can(regex("^kindest/node:v1\\.(29|3[0-3])\\.[0-9]+(@sha256:[0-9a-f]{64})?$", var.node_image))
    error_message = "node_image must be kindest/node:v1.29.x to v1.33.x (the chart's tested range)."
  }
}

variable "workers" {
  description = "Worker nodes besides the control plane."
  type        = number
  default     = 1

  validation {
    condition     = var.workers >= 0 && var.workers <= 5 && floor(var.workers) == var.workers
    error_message = "workers must be a whole number from 0 to 5."
  }
}

variable "namespace" {
  description = "Namespace of the Helm release (created if missing)."
  type        = string
  default     = "marketpipe"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS label."
  }
}

variable "release_name" {
  description = "Name of the Helm release."
  type        = string
  default     = "marketpipe"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$", var.release_name))
    error_message = "release_name must be a DNS label of at most 53 characters (Helm's limit)."
  }
}

variable "image_tag" {
  description = "Tag of the marketpipe and marketpipe-spark images (built and loaded with make images kind-load)."
  type        = string
  default     = "0.1.0"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid image tag."
  }
}

variable "values_files" {
  description = "Values files for the release, relative to the repository root."
  type        = list(string)
  default     = ["charts/marketpipe/ci/kind-minimal-values.yaml"]

  validation {
    condition     = alltrue([for f in var.values_files : can(regex("\\.ya?ml$", f))])
    error_message = "values_files must be YAML files."
  }
}

variable "timeout_seconds" {
  description = "How long helm waits for the release to be ready."
  type        = number
  default     = 900

  validation {
    condition     = var.timeout_seconds >= 60
    error_message = "timeout_seconds must be at least 60."
  }
}
