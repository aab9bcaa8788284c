"""A third-party hubgen family used by the contract test: independent per-pixel Bernoulli pixels.

It lives outside hubgen and registers only through its own entry point (`hubgen.families`), to show that a new
family needs its folder, its card template and one entry-point line, and nothing in hubgen's core.
"""
