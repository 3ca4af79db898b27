"""AWS effects: the client factory and error translation, S3 watch and transfers, Lambda,
SSM, Secrets Manager and ECS."""
