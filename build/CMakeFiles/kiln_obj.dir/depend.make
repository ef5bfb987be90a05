# Empty dependencies file for kiln_obj.
# This may be replaced when dependencies are built.
