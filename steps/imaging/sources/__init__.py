"""Where an image step's input images come from: asset records, project files and http(s)
URLs read as reference images (URLs through the safe fetcher), and the plan that turns an
edit step's references into provider inputs, every limit checked before anything is paid.
"""
