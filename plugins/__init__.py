"""Built-in benchharness plugins, written only against the public plugin API.

Installed as the package ``benchharness_plugins``; each module implements hooks from
:mod:`benchharness.hookspecs` exactly as a third-party package would.
"""
