# Empty dependencies file for bt86_base.
# This may be replaced when dependencies are built.
