print("sigma")
