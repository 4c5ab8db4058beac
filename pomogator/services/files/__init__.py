"""Turn users' files into model input: text extracted from documents, data-URL parts for images and scans.

Pure Python, no Telegram: the bot downloads the bytes and passes them here.
"""

from .detect import MAX_DOWNLOAD_BYTES, FileKind, check_size, detect_kind, sniff_image
from .document import DocumentKind, ExtractedDocument, cut_to_fit
from .docx import MAX_UNCOMPRESSED_BYTES, check_zip_bounds
from .extract import extract_document
from .images import MAX_IMAGE_BYTES, image_part
from .pdf import pdf_file_part
from .prompt import DEFAULT_QUESTION, document_content, document_prompt, truncation_note

__all__ = [
    "DEFAULT_QUESTION",
    "MAX_DOWNLOAD_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_UNCOMPRESSED_BYTES",
    "DocumentKind",
    "ExtractedDocument",
    "FileKind",
    "check_size",
    "check_zip_bounds",
    "cut_to_fit",
    "detect_kind",
    "document_content",
    "document_prompt",
    "extract_document",
    "image_part",
    "pdf_file_part",
    "sniff_image",
    "truncation_note",
]
