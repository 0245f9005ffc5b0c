"""The Kubernetes target: region faults through chaostoolkit-kubernetes."""
