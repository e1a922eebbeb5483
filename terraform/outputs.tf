output "kubeconfig" {
  description = "Kubeconfig of the kind cluster."
  value       = kind_cluster.this.kubeconfig
  sensitive   = true
}

output "release" {
  description = "Name, namespace and status of the Helm release."
  value = {
    name      = helm_release.marketpipe.name
    namespace = helm_release.marketpipe.namespace
    status    = helm_release.marketpipe.status
  }
}
