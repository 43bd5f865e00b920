"""The files stages hand over: for each, one typed definition beside its writer and reader.

Both sides use these, so a field has one name everywhere. A missing or malformed file is one
UserError that names the file and the stage that writes it.
"""
