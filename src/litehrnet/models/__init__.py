"""Lite-HRNet models: configs, blocks, backbone, registry."""
