"""`python -m image_tokenizer.cli ...`, the same as the `image-tokenizer` console script."""

import sys

from . import main

sys.exit(main())
