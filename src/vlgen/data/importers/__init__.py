"""Importers: one file per source format, each `import_X(..., opts) -> ImportResult` writing an imagefolder."""

from vlgen.data.importers._common import ImportOptions, ImportResult
from vlgen.data.importers.coco import import_coco
from vlgen.data.importers.diffusiondb import import_diffusiondb
from vlgen.data.importers.flickr8k import import_flickr8k
from vlgen.data.importers.folder import import_folder

__all__ = ["ImportOptions", "ImportResult", "import_coco", "import_diffusiondb", "import_flickr8k", "import_folder"]
