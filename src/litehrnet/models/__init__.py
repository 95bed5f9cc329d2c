"""Lite-HRNet models: architecture configs, layers, blocks, backbone, registry."""
