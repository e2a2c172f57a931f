"""From bringup configs and ``key:=value`` arguments to node descriptions, for launch files and the
``bringup`` executable."""
