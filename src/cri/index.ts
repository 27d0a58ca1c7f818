// The CRI keychain (docs/snapshotter.md §5.4): the CRI ImageService proxy the kubelet talks to and the
// registry credentials it learns from PullImage.
export {
  CriCredentials,
  credentialsFromAuthConfig,
  normalizeImageRef,
  type CriAuthConfig,
  type CriCredentialsOptions,
} from "./credentials.js";
export {
  CriImageService,
  backendTarget,
  type CriImageServiceOptions,
  type GrpcServiceRegistration,
} from "./image-service.js";
export {
  imageService,
  IMAGE_SERVICE_METHODS,
  IMAGE_SERVICE_V1,
  IMAGE_SERVICE_V1ALPHA2,
  type ImageServiceMethod,
} from "./proto.js";
